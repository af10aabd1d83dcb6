"""Hostile requests sent as an outsider would: raw bytes over a plain gRPC channel, no SDK.

Every numeric field that steers the coordinator, every list, string and byte field it stores and
every stream it reads is bounded; a client's mistake gets INVALID_ARGUMENT, RESOURCE_EXHAUSTED or
UNAUTHENTICATED with a one-line log, never INTERNAL or a traceback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from swarmnet.compression import get_codec
from swarmnet.federated.signing import PROTOCOL_VERSION, register_message, update_message
from swarmnet.identity import Identity
from swarmnet.proto import federated_pb2 as pb
from tests.integration.federated.harness import coordinator_config, initial_adapter, running
from tests.support import poll_until

pytestmark = pytest.mark.timeout(120)

SERVICE = "/swarmnet.federated.v1.Coordinator/"
SESSION = "x-swarmnet-session-bin"
LENGTH = sum(t.numel() for t in initial_adapter().values())


class Outsider:
    """A client that speaks only raw bytes over a gRPC channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 16 << 20)])
        self.identity = Identity.generate()
        self.client_id = ""
        self.session = b""

    def unary(self, method: str, request: bytes, timeout: float = 10.0, **kwargs: Any) -> bytes:
        call = self.channel.unary_unary(SERVICE + method)
        reply: bytes = call(request, timeout=timeout, **kwargs)
        return reply

    def stream(self, chunks: Iterator[bytes], timeout: float = 20.0) -> bytes:
        call = self.channel.stream_unary(SERVICE + "SubmitUpdate")
        reply: bytes = call(chunks, timeout=timeout, metadata=self.metadata())
        return reply

    def metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((SESSION, self.session),)

    def register_request(self, **capabilities: Any) -> bytes:
        stamp, nonce = int(time.time() * 1000), os.urandom(16)
        key = self.identity.public_key
        return pb.RegisterRequest(
            protocol_version=PROTOCOL_VERSION, public_key=key, timestamp_ms=stamp, nonce=nonce,
            capabilities=pb.Capabilities(**capabilities),
            signature=self.identity.sign(register_message(key, stamp, nonce, "")),
        ).SerializeToString()  # fmt: skip

    def register(self, **capabilities: Any) -> None:
        reply = pb.RegisterReply.FromString(self.unary("Register", self.register_request(samples=10, **capabilities)))
        self.client_id, self.session = reply.client_id, reply.session

    def task(self, wait_s: float, timeout: float = 10.0) -> pb.TaskReply:
        request = pb.TaskRequest(client_id=self.client_id, wait_s=wait_s).SerializeToString()
        return pb.TaskReply.FromString(self.unary("GetTask", request, timeout, metadata=self.metadata()))

    def wait_for_task(self) -> pb.TaskReply:
        def training() -> pb.TaskReply | None:
            task = self.task(1.0)  # a long poll: answered once there is a task, or after 1 s
            return task if task.kind == pb.TaskReply.TRAIN else None

        return poll_until(training, timeout=30, interval=0, what="the outsider selected for a round")

    def header(self, task: pb.TaskReply, payload: bytes) -> bytes:
        digest = hashlib.sha256(payload).digest()
        signed = update_message(
            round_nonce=task.round_nonce, round_=task.round, global_version=task.global_version, samples=10,
            encoding="codec", payload_size=len(payload), payload_sha256=digest,
        )  # fmt: skip
        header = pb.UpdateHeader(
            client_id=self.client_id, round=task.round, global_version=task.global_version, samples=10,
            payload_size=len(payload), payload_sha256=digest, encoding="codec", signature=self.identity.sign(signed),
        )  # fmt: skip
        return pb.UpdateChunk(header=header).SerializeToString()

    def close(self) -> None:
        self.channel.close()


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def _solo_config(tmp_path: Path, **rounds: Any) -> Any:
    """One client is a round: the outsider is always the one selected."""
    settings = {"clients_per_round": 1, "min_clients": 1, "min_participants": 1, "rounds": 0, **rounds}
    return coordinator_config(tmp_path, **settings)


def test_non_finite_or_negative_wait_is_refused_at_once(tmp_path: Path) -> None:
    with running(coordinator_config(tmp_path)) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            outsider.register()
            for wait in (float("nan"), float("inf"), float("-inf"), -1.0):
                started = time.monotonic()
                assert _code(partial(outsider.task, wait, timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT, wait
                assert time.monotonic() - started < 2.0
            assert outsider.task(0.0).kind == pb.TaskReply.WAIT  # still served
        finally:
            outsider.close()


def test_registration_data_is_bounded_before_it_is_stored(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path)
    with running(config) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            oversized: dict[str, dict[str, Any]] = {
                "many codecs": {"codecs": [f"c{i}" for i in range(10_000)]},
                "long codec names": {"codecs": ["x" * 4096] * 4},
                "a 2 MiB codec list": {"codecs": ["y" * 1000] * 2000},
                "long device": {"device": "d" * 100_000},
                "long version": {"software_version": "v" * 100_000},
                "absurd samples": {"samples": 2**62},
            }
            for name, capabilities in oversized.items():
                request = outsider.register_request(**capabilities)
                assert _code(partial(outsider.unary, "Register", request)) == grpc.StatusCode.INVALID_ARGUMENT, name
            outsider.register(codecs=["none", "int8", "not-a-codec"], device="cpu")
            stored = coordinator.server.registry.clients[outsider.client_id]
            assert stored.codecs == ("int8", "none")  # only what this coordinator can use is kept
        finally:
            outsider.close()
    persisted = sum(p.stat().st_size for p in tmp_path.iterdir() if p.is_file())
    assert persisted < 64 << 10, f"{persisted} B persisted for one small registration"


@pytest.mark.parametrize("method", ["Register", "GetTask", "FetchAdapter", "SecAgg", "Status", "SubmitUpdate"])
def test_garbage_bytes_are_invalid_argument_without_a_traceback(
    tmp_path: Path, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"\xff\xff\xff\xff\x0fgarbage"
    with running(coordinator_config(tmp_path)) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            caplog.set_level(logging.INFO)
            if method == "SubmitUpdate":
                code = _code(lambda: outsider.stream(iter([garbage])))
            elif method == "FetchAdapter":
                call = outsider.channel.unary_stream(SERVICE + method)
                code = _code(lambda: list(call(garbage, timeout=10)))
            else:
                code = _code(lambda: outsider.unary(method, garbage))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            outsider.register()  # the coordinator carries on
        finally:
            outsider.close()
    assert _tracebacks(caplog) == []


def test_long_ids_and_secagg_fields_are_refused(tmp_path: Path) -> None:
    with running(coordinator_config(tmp_path)) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            outsider.register()
            long_id = pb.TaskRequest(client_id="A" * 1_000_000, wait_s=0).SerializeToString()
            assert _code(lambda: outsider.unary("GetTask", long_id, metadata=outsider.metadata())) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
            cases = {
                "unknown phase": pb.SecAggRequest(client_id=outsider.client_id, round=1, phase=9),  # type: ignore[arg-type]
                "huge keys": pb.SecAggRequest(client_id=outsider.client_id, round=1, keys=b"k" * (1 << 20)),
                "many messages": pb.SecAggRequest(
                    client_id=outsider.client_id,
                    round=1,
                    phase=pb.SecAggRequest.SHARE,
                    messages={f"peer{i}": b"m" for i in range(5000)},
                ),
            }
            for name, request in cases.items():
                data = request.SerializeToString()
                code = _code(partial(outsider.unary, "SecAgg", data, metadata=outsider.metadata()))
                assert code == grpc.StatusCode.INVALID_ARGUMENT, name
        finally:
            outsider.close()


def test_update_streams_are_bounded_in_chunks_concurrency_and_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = replace(_solo_config(tmp_path, round_timeout_s=4.0), max_update_bytes=1 << 20)
    with running(config) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            caplog.set_level(logging.INFO)
            outsider.register()
            task = outsider.wait_for_task()
            payload = get_codec("none").encode(torch.zeros(LENGTH))
            header = outsider.header(task, payload)

            def empty_flood() -> Iterator[bytes]:
                yield header
                for _ in range(100_000):
                    yield pb.UpdateChunk().SerializeToString()
                yield pb.UpdateChunk(data=payload).SerializeToString()

            assert _code(lambda: outsider.stream(empty_flood())) == grpc.StatusCode.RESOURCE_EXHAUSTED

            release = threading.Event()

            def held_open() -> Iterator[bytes]:
                yield header
                release.wait(30)

            first: list[grpc.StatusCode] = []
            holder = threading.Thread(target=lambda: first.append(_code(lambda: outsider.stream(held_open()))))
            holder.start()
            try:
                poll_until(lambda: outsider.client_id in coordinator.server.streaming(), timeout=10, interval=0.02)
                assert _code(lambda: outsider.stream(held_open())) == grpc.StatusCode.RESOURCE_EXHAUSTED
            finally:
                release.set()
                holder.join(30)

            task = outsider.wait_for_task()
            stalled_header = outsider.header(task, payload)
            never = threading.Event()

            def stalled() -> Iterator[bytes]:
                yield stalled_header
                never.wait(30)

            started = time.monotonic()
            try:
                code = _code(lambda: outsider.stream(stalled(), timeout=25))
            finally:
                never.set()
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < task.deadline_s + 3.0, "the coordinator held a stalled stream"
        finally:
            outsider.close()
    assert _tracebacks(caplog) == []


def test_registering_many_keys_fills_a_bounded_registry(tmp_path: Path) -> None:
    config = replace(coordinator_config(tmp_path), max_registered=3)
    with running(config) as coordinator:
        outsiders = [Outsider(coordinator.address) for _ in range(5)]
        try:
            for outsider in outsiders[:3]:
                outsider.register()
            for outsider in outsiders[3:]:
                assert _code(outsider.register) == grpc.StatusCode.RESOURCE_EXHAUSTED
            outsiders[0].register()  # a registered client still re-registers
            assert len(coordinator.server.registry.clients) == 3
        finally:
            for outsider in outsiders:
                outsider.close()


def _refused_at_once(call: Callable[[], Any]) -> bool:
    """Whether ``call`` is refused with RESOURCE_EXHAUSTED (True) or accepted (False)."""
    try:
        call()
    except grpc.RpcError as error:
        code = error.code()
    else:
        return False
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    return True


def _hold_a_long_poll(outsider: Outsider, wait_s: float) -> None:
    """One long poll that is held open; a refusal (our own probe briefly held a slot) is retried."""

    def held() -> bool:
        try:
            outsider.task(wait_s, timeout=20)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False
        return True

    poll_until(held, timeout=20, interval=0.02, what="a long poll the coordinator holds open")


def test_long_polls_and_downloads_are_capped_per_client(tmp_path: Path) -> None:
    big = {"w": torch.zeros(4 << 20)}  # 16 MiB: an unread download stays open on flow control
    with running(coordinator_config(tmp_path), big) as coordinator:
        outsider = Outsider(coordinator.address)
        try:
            outsider.register()
            polls = [threading.Thread(target=_hold_a_long_poll, args=(outsider, 5.0)) for _ in range(4)]
            for poll in polls:
                poll.start()  # no round opens (one client of three): each holds for 5 s
            try:
                poll_until(lambda: _refused_at_once(lambda: outsider.task(0.0)), timeout=10, interval=0.05)
            finally:
                for poll in polls:
                    poll.join(30)
            assert outsider.task(0.0).kind == pb.TaskReply.WAIT  # served again once the polls ended
            fetch = outsider.channel.unary_stream(SERVICE + "FetchAdapter")
            request = pb.FetchRequest(client_id=outsider.client_id).SerializeToString()
            unread = [fetch(request, timeout=30, metadata=outsider.metadata()) for _ in range(2)]
            try:
                for call in unread:  # the server has taken both (a probe sent now cannot overtake one) and is
                    next(call)  # stuck on flow control with the rest of the 16 MiB
                poll_until(
                    lambda: _refused_at_once(lambda: next(fetch(request, timeout=30, metadata=outsider.metadata()))),
                    timeout=10,
                    interval=0.05,
                )
            finally:
                for call in unread:
                    call.cancel()
        finally:
            outsider.close()
