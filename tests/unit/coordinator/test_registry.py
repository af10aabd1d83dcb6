"""The client registry: bounded, journalled, and sessions checked against expiry and revocation."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.store import CoordinatorStore
from swarmnet.federated.signing import PROTOCOL_VERSION, register_message
from swarmnet.identity import Identity
from swarmnet.proto import federated_pb2 as pb


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _request(identity: Identity, clock: Clock, **capabilities: Any) -> pb.RegisterRequest:
    stamp, nonce = int(clock.now * 1000), os.urandom(16)
    return pb.RegisterRequest(
        protocol_version=PROTOCOL_VERSION,
        public_key=identity.public_key,
        timestamp_ms=stamp,
        nonce=nonce,
        capabilities=pb.Capabilities(samples=5, **capabilities),
        signature=identity.sign(register_message(identity.public_key, stamp, nonce, "")),
    )


def _registry(tmp_path: Path, clock: Clock, **changes: Any) -> ClientRegistry:
    config = replace(CoordinatorConfig(state_dir=tmp_path), **changes)
    return ClientRegistry(config, CoordinatorStore(tmp_path), clock=clock, wall_clock=clock)


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(Rejected) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_a_full_registry_refuses_until_a_session_expires_then_forgets_the_oldest(tmp_path: Path) -> None:
    clock = Clock()
    registry = _registry(tmp_path, clock, max_registered=2, session_ttl_s=100.0)
    first, second, third = Identity.generate(), Identity.generate(), Identity.generate()
    registry.register(_request(first, clock))
    clock.now += 10
    registry.register(_request(second, clock))
    assert _code(lambda: registry.register(_request(third, clock))) == grpc.StatusCode.RESOURCE_EXHAUSTED
    clock.now += 40
    registry.register(_request(first, clock))  # a known client always re-registers
    clock.now += 65  # second's session expired (105 s old); first's is 65 s old, still live
    registry.register(_request(third, clock))
    assert set(registry.clients) == {first.peer_id, third.peer_id}
    assert set(_registry(tmp_path, clock).clients) == {first.peer_id, third.peer_id}  # the journal agrees


def test_a_session_is_checked_for_expiry_and_revocation(tmp_path: Path) -> None:
    clock = Clock()
    registry = _registry(tmp_path, clock, session_ttl_s=100.0)
    identity = Identity.generate()
    _, session = registry.register(_request(identity, clock))
    assert registry.authenticate(identity.peer_id, session).client_id == identity.peer_id
    registry.revocations.revoke(identity.peer_id, now_ms=int(clock.now * 1000))
    assert _code(lambda: registry.authenticate(identity.peer_id, session)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: registry.register(_request(identity, clock))) == grpc.StatusCode.PERMISSION_DENIED
    registry.revocations.reinstate(identity.peer_id)
    clock.now += 1
    _, fresh = registry.register(_request(identity, clock))
    assert registry.authenticate(identity.peer_id, fresh).client_id == identity.peer_id
    assert _code(lambda: registry.authenticate(identity.peer_id, session)) == grpc.StatusCode.UNAUTHENTICATED
    clock.now += 100
    assert _code(lambda: registry.authenticate(identity.peer_id, fresh)) == grpc.StatusCode.UNAUTHENTICATED


def test_stored_capabilities_are_cut_to_known_codecs_and_the_journal_is_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("swarmnet.coordinator.registry._COMPACT_SLACK", 8)
    clock = Clock()
    identity = Identity.generate()
    codecs = ["int8", "x" * 10_000, "none"] * 100
    legacy = [
        {"client_id": identity.peer_id, "public_key": identity.public_key.hex(), "samples": 3, "codecs": codecs,
         "secure_aggregation": False, "registered_at": 1.0}
    ]  # fmt: skip
    (tmp_path / "clients.json").write_text(json.dumps(legacy))  # a registry written before the bounds
    registry = _registry(tmp_path, clock)
    assert registry.clients[identity.peer_id].codecs == ("int8", "none")
    assert (tmp_path / "clients.json").stat().st_size < 1024
    for _ in range(30):
        registry.register(_request(identity, clock, codecs=["none"]))
    assert len((tmp_path / "clients.journal").read_text().splitlines()) <= 10  # folded into the snapshot
    assert _registry(tmp_path, clock).clients[identity.peer_id].codecs == ("none",)
