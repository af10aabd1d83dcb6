"""Every kind of bad request gets a clear gRPC status, and the round still completes with the honest updates."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from swarmnet.compression import get_codec
from swarmnet.federated import Connection
from swarmnet.federated.signing import PROTOCOL_VERSION, register_message, update_message
from swarmnet.identity import Identity
from swarmnet.proto import federated_pb2 as pb
from swarmnet.testing import poll_until
from tests.integration.federated.harness import coordinator_config, initial_adapter, make_client, run_all, running

pytestmark = pytest.mark.timeout(120)

LENGTH = sum(t.numel() for t in initial_adapter().values())


def _registered(address: str) -> Connection:
    connection = Connection(address, Identity.generate())
    connection.register(pb.Capabilities(samples=10))
    return connection


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def _header(conn: Connection, task: pb.TaskReply, payload: bytes, **changes: Any) -> pb.UpdateHeader:
    fields: dict[str, Any] = {
        "client_id": conn.client_id,
        "round": task.round,
        "global_version": task.global_version,
        "samples": 10,
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).digest(),
        "encoding": "codec",
    }
    fields.update(changes)
    signed = update_message(
        round_nonce=task.round_nonce,
        round_=fields["round"],
        global_version=fields["global_version"],
        samples=fields["samples"],
        encoding=fields["encoding"],
        payload_size=fields["payload_size"],
        payload_sha256=fields["payload_sha256"],
    )
    return pb.UpdateHeader(**fields, signature=conn.identity.sign(signed))


def _stream(conn: Connection, chunks: list[pb.UpdateChunk], metadata: Any = None) -> pb.SubmitReply:
    reply: pb.SubmitReply = conn.stub.SubmitUpdate(
        iter(chunks), timeout=10, metadata=conn.metadata() if metadata is None else metadata
    )
    return reply


def _send(conn: Connection, task: pb.TaskReply, payload: bytes, **changes: Any) -> pb.SubmitReply:
    return _stream(conn, [pb.UpdateChunk(header=_header(conn, task, payload, **changes), data=payload)])


def _wait_for_task(conn: Connection) -> pb.TaskReply:
    def training_task() -> pb.TaskReply | None:
        task = conn.task(1.0)  # a long poll: the coordinator answers once it has a task or after 1 s
        return task if task.kind == pb.TaskReply.TRAIN else None

    task: pb.TaskReply = poll_until(training_task, timeout=30, interval=0, what="the attacker's training task")
    return task


def test_bad_updates_are_rejected_and_the_round_completes(tmp_path: Path) -> None:
    config = replace(coordinator_config(tmp_path, rounds=1, round_timeout_s=60.0), max_update_bytes=4096)
    with running(config) as coordinator:
        honest = [make_client(coordinator.address, seed) for seed in range(2)]
        attacker = _registered(coordinator.address)
        stranger = Connection(coordinator.address, Identity.generate())  # never registered
        try:
            for client in honest:
                client.register()
            task = _wait_for_task(attacker)
            good = get_codec("none").encode(torch.zeros(LENGTH))
            nan = get_codec("none").encode(torch.full((LENGTH,), float("nan")))
            short = get_codec("none").encode(torch.zeros(LENGTH - 1))
            garbage = os.urandom(300)
            cases: dict[str, tuple[Callable[[], Any], grpc.StatusCode]] = {
                "unknown client": (lambda: stranger.task(0.1), grpc.StatusCode.UNAUTHENTICATED),
                "no session": (
                    lambda: _stream(attacker, [pb.UpdateChunk(header=_header(attacker, task, good), data=good)], ()),
                    grpc.StatusCode.UNAUTHENTICATED,
                ),
                "forged session": (
                    lambda: _stream(
                        attacker,
                        [pb.UpdateChunk(header=_header(attacker, task, good), data=good)],
                        (("x-swarmnet-session-bin", b"x" * 32),),
                    ),
                    grpc.StatusCode.UNAUTHENTICATED,
                ),
                "empty stream": (lambda: _stream(attacker, []), grpc.StatusCode.INVALID_ARGUMENT),
                "no header": (
                    lambda: _stream(attacker, [pb.UpdateChunk(data=good)]),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                "oversized": (
                    lambda: _send(attacker, task, good, payload_size=10**9),
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ),
                "more than declared": (
                    lambda: _send(attacker, task, good + b"x", payload_size=len(good)),
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ),
                "unsigned": (
                    lambda: _stream(
                        attacker,
                        [pb.UpdateChunk(header=_unsigned(_header(attacker, task, good)), data=good)],
                    ),
                    grpc.StatusCode.UNAUTHENTICATED,
                ),
                "digest mismatch": (
                    lambda: _send(attacker, task, good, payload_sha256=b"\0" * 32),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                "malformed": (lambda: _send(attacker, task, garbage), grpc.StatusCode.INVALID_ARGUMENT),
                "wrong shape": (lambda: _send(attacker, task, short), grpc.StatusCode.INVALID_ARGUMENT),
                "nan": (lambda: _send(attacker, task, nan), grpc.StatusCode.INVALID_ARGUMENT),
                "zero samples": (lambda: _send(attacker, task, good, samples=0), grpc.StatusCode.INVALID_ARGUMENT),
                "wrong round": (
                    lambda: _send(attacker, task, good, round=task.round + 5),
                    grpc.StatusCode.FAILED_PRECONDITION,
                ),
                "stale version": (
                    lambda: _send(attacker, task, good, global_version=task.global_version + 1),
                    grpc.StatusCode.FAILED_PRECONDITION,
                ),
                "wrong encoding": (
                    lambda: _send(attacker, task, good, encoding="secagg"),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                "secagg in a plain round": (
                    lambda: attacker.secagg(task.round, pb.SecAggRequest.ADVERTISE, keys=b"k", timeout=5),
                    grpc.StatusCode.FAILED_PRECONDITION,
                ),
            }
            got = {name: _code(call) for name, (call, _) in cases.items()}
            assert got == {name: code for name, (_, code) in cases.items()}
            assert _send(attacker, task, good).accepted
            assert _code(lambda: _send(attacker, task, good)) == grpc.StatusCode.ALREADY_EXISTS  # replay
            late = _registered(coordinator.address)  # registered after the round was drawn: not selected
            assert _code(lambda: _send(late, task, good)) == grpc.StatusCode.PERMISSION_DENIED
            run_all(honest, lambda c: c.run(timeout_s=60))
            status = attacker.status()
        finally:
            for client in honest:
                client.close()
            attacker.close()
            stranger.close()
    assert status.history[-1].outcome == "completed"
    assert len(status.history[-1].contributors) == 3


def _unsigned(header: pb.UpdateHeader) -> pb.UpdateHeader:
    header.signature = b""
    return header


def test_bad_registrations_are_rejected(tmp_path: Path) -> None:
    config = replace(coordinator_config(tmp_path), tokens=frozenset({"operator-secret"}))
    with running(config) as coordinator:
        identity = Identity.generate()
        connection = Connection(coordinator.address, identity)
        try:

            def register(token: str = "operator-secret", version: int = PROTOCOL_VERSION, sign: bool = True,
                         nonce: bytes | None = None, skew_s: float = 0.0) -> pb.RegisterReply:  # fmt: skip
                stamp, nonce = int((time.time() + skew_s) * 1000), nonce or os.urandom(16)
                message = register_message(identity.public_key, stamp, nonce, token)
                request = pb.RegisterRequest(
                    protocol_version=version, public_key=identity.public_key, timestamp_ms=stamp, nonce=nonce,
                    token=token, signature=identity.sign(message) if sign else b"\0" * 64,
                )  # fmt: skip
                return connection.stub.Register(request, timeout=10)  # type: ignore[no-any-return]

            assert _code(lambda: register(token="guess")) == grpc.StatusCode.PERMISSION_DENIED
            assert _code(lambda: register(version=99)) == grpc.StatusCode.FAILED_PRECONDITION
            assert _code(lambda: register(sign=False)) == grpc.StatusCode.UNAUTHENTICATED
            assert _code(lambda: register(skew_s=3600)) == grpc.StatusCode.UNAUTHENTICATED
            nonce = os.urandom(16)
            assert register(nonce=nonce).client_id == identity.peer_id
            assert _code(lambda: register(nonce=nonce)) == grpc.StatusCode.UNAUTHENTICATED  # replay
            assert connection.status().registered == 1
        finally:
            connection.close()
