"""The coordinator restarted mid-round resumes at the same round and loses nothing; TLS and tokens."""

from __future__ import annotations

import datetime
import ipaddress
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmnet.coordinator.config import TlsConfig
from swarmnet.coordinator.server import BackgroundCoordinator
from swarmnet.coordinator.store import CoordinatorStore
from swarmnet.federated import TlsSettings
from swarmnet.federated.local_training import default_step
from swarmnet.testing import poll_until
from tests.integration.federated.harness import (
    coordinator_config,
    initial_adapter,
    make_client,
    run_all,
    running,
)

pytestmark = pytest.mark.timeout(120)


def test_restart_mid_round_resumes_the_same_round(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path, rounds=3, local_steps=2)
    first = BackgroundCoordinator(config, initial_adapter()).start()
    port = first.server.port
    address = first.address
    release, calls = threading.Event(), [0]

    def slow_step(model: Any, batch: Any) -> Any:  # blocks in round 2 until the coordinator was restarted
        calls[0] += 1
        if calls[0] == config.rounds.local_steps + 1:
            assert release.wait(60)
        return default_step(model, batch)

    clients = [make_client(address, seed, retry_backoff_s=0.1) for seed in range(2)]
    slow = make_client(address, 2, retry_backoff_s=0.1)
    slow.trainer._step = slow_step
    clients.append(slow)
    worker = threading.Thread(target=lambda: run_all(clients, lambda c: c.run(timeout_s=90), timeout=100))
    worker.start()
    second = None
    try:
        engine = first.server.engine
        assert engine is not None
        poll_until(
            lambda: engine.round is not None and engine.round.number == 2 and len(engine.round.submissions) == 2,
            timeout=30,
            interval=0.02,
            what="two of round 2's three updates",
        )
        first.stop()  # two updates of round 2 are lost with the process
        stored = CoordinatorStore(tmp_path).load()
        assert stored is not None
        assert (stored.next_round, stored.version) == (2, 1)
        second = BackgroundCoordinator(replace(config, port=port)).start()
        release.set()
        worker.join(100)
        assert not worker.is_alive()
        state = second.server.engine.state  # type: ignore[union-attr]
    finally:
        release.set()
        first.stop()
        if second is not None:
            second.stop()
        for client in clients:
            client.close()
    assert [r.round for r in state.history] == [1, 2, 3]
    assert [r.outcome for r in state.history] == ["completed"] * 3
    assert all(len(r.contributors) == 3 for r in state.history)
    assert state.version == 3


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_and_operator_tokens(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    config = replace(
        coordinator_config(tmp_path / "state", rounds=1),
        tls=TlsConfig(cert_path=cert, key_path=key),
        tokens=frozenset({"team-a"}),
    )
    with running(config) as coordinator:
        tls = TlsSettings(root_cert=cert, server_name="localhost")
        clients = [make_client(coordinator.address, seed, tls=tls, token="team-a") for seed in range(3)]
        plaintext = make_client(coordinator.address, 9, token="team-a", rpc_timeout_s=2.0)
        no_token = make_client(coordinator.address, 8, tls=tls)
        try:
            with pytest.raises(grpc.RpcError) as refused:
                no_token.register()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.RpcError) as plain:
                plaintext.register()
            assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
            results = run_all(clients, lambda c: c.run(timeout_s=60))
        finally:
            for client in (*clients, plaintext, no_token):
                client.close()
    assert [len(r) for r in results] == [1, 1, 1]
