"""Session tokens expire and can be revoked, replayed registrations stay refused across restarts,
and a coordinator does not serve plaintext beyond loopback unless told to."""

from __future__ import annotations

import base64
import logging
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from swarmnet.cli.coordinator import config_from_args
from swarmnet.cli.main import build_parser, main
from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.server import BackgroundCoordinator, CoordinatorServer
from swarmnet.errors import ConfigError
from swarmnet.federated import Connection
from swarmnet.identity import Identity
from swarmnet.proto import federated_pb2 as pb
from tests.integration.federated.harness import coordinator_config, initial_adapter, running
from tests.integration.federated.test_hostile_requests import Outsider
from tests.support import poll_until

pytestmark = pytest.mark.timeout(120)


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    code: grpc.StatusCode = caught.value.code()
    return code


def _refused(outsider: Outsider) -> bool:
    """Whether the outsider's session is refused now (UNAUTHENTICATED; any other failure fails the test)."""
    try:
        outsider.task(0.0)
    except grpc.RpcError as error:
        code = error.code()
    else:
        return False
    assert code == grpc.StatusCode.UNAUTHENTICATED
    return True


def test_a_session_under_the_text_metadata_name_is_refused_with_the_right_name(tmp_path: Path) -> None:
    with running(coordinator_config(tmp_path)) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            outsider.register()
            request = pb.TaskRequest(client_id=outsider.client_id).SerializeToString()
            metadata = (("x-swarmnet-session", base64.b64encode(outsider.session).decode()),)
            with pytest.raises(grpc.RpcError) as caught:
                outsider.unary("GetTask", request, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "x-swarmnet-session-bin" in caught.value.details()
        finally:
            outsider.close()


def test_a_session_expires_and_the_client_registers_again(tmp_path: Path) -> None:
    config = replace(coordinator_config(tmp_path), session_ttl_s=1.5)
    with running(config) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            outsider.register()
            assert outsider.task(0.0).kind == pb.TaskReply.WAIT
            poll_until(lambda: _refused(outsider), timeout=10, what="the session to expire")
            outsider.register()
            assert outsider.task(0.0).kind == pb.TaskReply.WAIT
        finally:
            outsider.close()


def test_a_revoked_client_stays_out_across_restarts_until_reinstated(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path)
    with running(config) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            outsider.register()
            identity, client_id, old_session = outsider.identity, outsider.client_id, outsider.session
            assert main(["coordinator", "--state-dir", str(tmp_path), "--revoke", client_id]) == 0
            poll_until(lambda: _refused(outsider), timeout=10, what="the revocation to take effect")
            assert _code(outsider.register) == grpc.StatusCode.PERMISSION_DENIED
            assert client_id not in coordinator.server.registry.active()
        finally:
            outsider.close()
    with running(config) as coordinator:
        outsider = Outsider(coordinator.address)
        outsider.identity, outsider.client_id, outsider.session = identity, client_id, old_session
        try:
            assert _refused(outsider)
            assert _code(outsider.register) == grpc.StatusCode.PERMISSION_DENIED
            assert main(["coordinator", "--state-dir", str(tmp_path), "--reinstate", client_id]) == 0
            poll_until(lambda: _registers(outsider), timeout=10, what="the reinstatement to take effect")
            assert outsider.task(0.0).kind == pb.TaskReply.WAIT
            outsider.session = old_session  # sessions issued before the revocation stay dead
            assert _refused(outsider)
        finally:
            outsider.close()


def _registers(outsider: Outsider) -> bool:
    """Whether the outsider may register now (PERMISSION_DENIED while revoked)."""
    try:
        outsider.register()
    except grpc.RpcError as error:
        code = error.code()
    else:
        return True
    assert code == grpc.StatusCode.PERMISSION_DENIED
    return False


def test_a_replayed_registration_is_refused_after_a_restart(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path)
    with running(config) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            captured = outsider.register_request(samples=5)
            reply = pb.RegisterReply.FromString(outsider.unary("Register", captured))
            assert reply.client_id == outsider.identity.peer_id
            assert _code(lambda: outsider.unary("Register", captured)) == grpc.StatusCode.UNAUTHENTICATED
        finally:
            outsider.close()
    with running(config) as coordinator:
        replayer = Outsider(coordinator.address)
        try:
            assert _code(lambda: replayer.unary("Register", captured)) == grpc.StatusCode.UNAUTHENTICATED
            replayer.client_id, replayer.session = reply.client_id, reply.session
            assert replayer.task(0.0).kind == pb.TaskReply.WAIT  # the honest session survives the restart
        finally:
            replayer.close()


def test_plaintext_beyond_loopback_needs_an_explicit_flag(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    exposed = replace(coordinator_config(tmp_path), host="0.0.0.0")
    with pytest.raises(ConfigError, match="allow-insecure"):
        CoordinatorServer(exposed, initial_adapter())
    args = build_parser().parse_args(["coordinator", "--state-dir", str(tmp_path), "--host", "0.0.0.0"])
    with pytest.raises(ConfigError, match="allow-insecure"):
        config_from_args(args).validate()
    args = build_parser().parse_args(
        ["coordinator", "--state-dir", str(tmp_path), "--host", "0.0.0.0", "--allow-insecure"]
    )
    allowed: CoordinatorConfig = config_from_args(args)
    allowed.validate()
    caplog.set_level(logging.WARNING)
    with BackgroundCoordinator(replace(exposed, allow_insecure=True, port=0), initial_adapter()):
        pass
    assert any("plaintext" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    caplog.clear()
    with running(coordinator_config(tmp_path / "loopback")):
        pass
    assert not any("plaintext" in r.getMessage() for r in caplog.records)


def test_the_sdk_warns_before_sending_tokens_in_plaintext(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    Connection("203.0.113.7:50051", Identity.generate()).close()
    assert any("plaintext" in r.getMessage() for r in caplog.records)
    caplog.clear()
    Connection("127.0.0.1:50051", Identity.generate()).close()
    Connection("localhost:50051", Identity.generate()).close()
    assert not caplog.records
