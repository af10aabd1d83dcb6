"""Updates that are well-formed and signed but meant to take over or break the global adapter.

A client that claims 10**12 samples must not outweigh the others, and updates whose aggregate
overflows float32 must never become the adapter the coordinator commits, serves or resumes from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from swarmnet.coordinator.server import CoordinatorServer
from swarmnet.coordinator.store import CoordinatorState, CoordinatorStore
from swarmnet.errors import ConfigError
from swarmnet.federated.secure_update import secure_weight
from swarmnet.federated.vector import AdapterSchema
from swarmnet.proto import federated_pb2 as pb
from swarmnet.testing import poll_until
from tests.integration.federated.harness import coordinator_config, initial_adapter, running, wait_rounds
from tests.integration.federated.raw_client import RawClient, serving

pytestmark = pytest.mark.timeout(120)

INITIAL = initial_adapter()
SCHEMA = AdapterSchema.of(INITIAL)
LENGTH = SCHEMA.numel


def test_a_client_claiming_a_trillion_samples_gets_a_bounded_share(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path, rounds=1, clients_per_round=4, min_clients=4, min_participants=4)
    with running(config) as coordinator:
        honest = [RawClient(coordinator.address, samples=10) for _ in range(3)]
        liar = RawClient(coordinator.address, samples=10**12)
        clients = [*honest, liar]
        with serving(clients, lambda c, _: torch.ones(LENGTH) if c is liar else torch.zeros(LENGTH)):
            state = wait_rounds(coordinator, 1)
    assert state.history[-1].outcome == "completed"
    assert len(state.history[-1].contributors) == 4
    share = state.adapter - SCHEMA.flatten(INITIAL)  # FedAvg, server lr 1: the liar's weight / total weight
    # Uncapped, 10**12 / (10**12 + 30) is all of it. Capped at twice the round's median claim (10):
    # 20 / (20 + 30).
    assert float(share.max()) <= 0.4 + 1e-6, float(share.max())
    assert float(share.min()) >= 0.4 - 1e-6


def test_a_huge_reported_loss_leaves_the_round_loss_finite(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path, rounds=1, clients_per_round=3, min_clients=3, min_participants=3)
    with running(config) as coordinator:
        clients = [RawClient(coordinator.address) for _ in range(3)]
        clients[0].train_loss = 1e308  # with the others' 1.0, a weighted sum of these overflows to Inf
        with serving(clients, lambda _c, _t: torch.zeros(LENGTH)):
            state = wait_rounds(coordinator, 1)
    assert state.history[-1].outcome == "completed"
    assert state.history[-1].train_loss == pytest.approx(1.0)  # the liar's figure counts as unknown


def test_a_trillion_sample_registration_does_not_shrink_the_others_in_secure_rounds(tmp_path: Path) -> None:
    """Secure clients scale their own values by ``samples / samples_cap``: the cap the task carries is bounded."""
    config = coordinator_config(tmp_path, rounds=1, secure_aggregation=True)  # 3 clients a round
    with running(config) as coordinator:
        clients = [RawClient(coordinator.address, samples=n, secure_aggregation=True) for n in (16, 16, 10**12)]
        try:
            task = poll_until(lambda: _training(clients[0].task(1.0)), timeout=30, interval=0, what="a training task")
        finally:
            for client in clients:
                client.close()
    assert task.kind == pb.TaskReply.TRAIN
    # Uncapped, samples_cap is 10**12 and an honest client weighs 16 / 10**12: nothing, once quantized.
    assert task.config.samples_cap == 32
    assert secure_weight(16, task.config.samples_cap) == 0.5


def _training(task: pb.TaskReply) -> pb.TaskReply | None:
    return task if task.kind == pb.TaskReply.TRAIN else None


def _flood_then_zeros(client: RawClient, task: pb.TaskReply) -> torch.Tensor:
    """3.0e38 per value in the first two rounds (finite, and signed like any update), zeros after."""
    return torch.full((LENGTH,), 3.0e38) if task.round <= 2 else torch.zeros(LENGTH)


def test_an_overflowing_aggregate_is_refused_and_never_served(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path, rounds=3, clients_per_round=2, min_clients=2, min_participants=2)
    with running(config) as coordinator:
        clients = [RawClient(coordinator.address) for _ in range(2)]
        with serving(clients, _flood_then_zeros):
            state = wait_rounds(coordinator, 4, timeout=60)
    outcomes = [(r.round, r.outcome) for r in state.history]
    # Round 1 takes the adapter to 3e38 (finite); round 2 would take it to Inf and is refused; the
    # rounds after it train on the last finite adapter as usual.
    assert outcomes == [(1, "completed"), (2, "failed"), (3, "completed"), (4, "completed")], state.history
    assert "NaN or Inf" in state.history[1].reason
    assert state.history[1].global_version == 1
    assert bool(torch.isfinite(state.adapter).all())
    with running(config, INITIAL) as restarted:
        reader = RawClient(restarted.address)
        try:
            served = reader.connection.fetch(10)
        finally:
            reader.close()
    assert served.version == state.version == 3
    assert bool(torch.isfinite(served.vector).all())
    assert torch.equal(served.vector, state.adapter)


def test_a_stored_non_finite_adapter_is_refused_at_start(tmp_path: Path) -> None:
    """A state directory written with an Inf adapter (by an older coordinator, or edited) is not served."""
    broken = SCHEMA.flatten(INITIAL)
    broken[3] = float("inf")
    CoordinatorStore(tmp_path).save(CoordinatorState(next_round=5, version=4, adapter=broken, schema=SCHEMA))
    with pytest.raises(ConfigError, match="NaN or Inf"):
        CoordinatorServer(coordinator_config(tmp_path), INITIAL)
