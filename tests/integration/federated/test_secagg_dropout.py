"""Secure aggregation over gRPC when clients die mid-round: before submitting, after submitting, too many."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch

from swarmnet.federated import FederatedClient
from swarmnet.proto import federated_pb2 as pb
from tests.integration.federated.harness import coordinator_config, make_client, run_all, running, wait_rounds

pytestmark = pytest.mark.timeout(120)

CLIENTS = 6  # threshold 6 - floor(6 / 3) = 4: any 2 may drop


class Died(Exception):
    """Raised inside a client thread to stop it the way a crash would."""


def _die_at_submit(client: FederatedClient) -> None:
    def submit(*args: Any, **kwargs: Any) -> Any:
        raise Died("killed before submitting")

    client.connection.submit = submit  # type: ignore[method-assign]


def _die_at_unmask(client: FederatedClient) -> None:
    original = client.connection.secagg

    def secagg(round_: int, phase: pb.SecAggRequest.Phase, **kwargs: Any) -> pb.SecAggReply:
        if phase == pb.SecAggRequest.UNMASK:
            raise Died("killed after submitting")
        return original(round_, phase, **kwargs)

    client.connection.secagg = secagg  # type: ignore[method-assign]


def _round(
    tmp_path: Path, seeds: list[int], secure: bool, sabotage: dict[int, Any] | None = None, client_s: float = 30
) -> Any:
    sabotage = sabotage or {}
    config = coordinator_config(
        tmp_path, rounds=1, clients_per_round=len(seeds), min_clients=len(seeds), secure_aggregation=secure,
        round_timeout_s=4.0, phase_timeout_s=4.0,
    )  # fmt: skip
    with running(config) as coordinator:
        clients = [make_client(coordinator.address, seed) for seed in seeds]
        for index, kill in sabotage.items():
            kill(clients[index])

        def work(client: FederatedClient) -> None:
            with contextlib.suppress(Died):
                client.run(max_rounds=1, timeout_s=client_s)

        try:
            run_all(clients, work)
        finally:
            for client in clients:
                client.close()
        return wait_rounds(coordinator, 1)


def _step(state: Any) -> float:
    return 1.0 / ((2**31 - 1) // 16)  # harness field: 32 bits, clip 1.0, 16 clients of headroom


def test_clients_dying_before_submitting(tmp_path: Path) -> None:
    secure = _round(tmp_path / "s", list(range(CLIENTS)), True, {4: _die_at_submit, 5: _die_at_submit})
    record = secure.history[-1]
    assert record.outcome == "completed", record.reason
    assert len(record.contributors) == 4
    plain = _round(tmp_path / "p", list(range(4)), False)
    assert torch.allclose(secure.adapter, plain.adapter, atol=6 * _step(secure) + 1e-6)


def test_clients_dying_after_submitting(tmp_path: Path) -> None:
    secure = _round(tmp_path / "s", list(range(CLIENTS)), True, {0: _die_at_unmask, 3: _die_at_unmask})
    record = secure.history[-1]
    assert record.outcome == "completed", record.reason
    assert len(record.contributors) == CLIENTS  # their masked updates count: the others' shares unmask them
    plain = _round(tmp_path / "p", list(range(CLIENTS)), False)
    assert torch.allclose(secure.adapter, plain.adapter, atol=6 * _step(secure) + 1e-6)


def test_too_many_dropouts_fail_the_round_cleanly(tmp_path: Path) -> None:
    kills = dict.fromkeys((0, 1, 2), _die_at_submit)
    state = _round(tmp_path, list(range(CLIENTS)), True, kills, client_s=6)
    record = state.history[0]
    assert record.outcome == "failed"
    assert "collect" in record.reason
    assert state.version == 0  # the global adapter is untouched
