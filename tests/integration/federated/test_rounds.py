"""A real gRPC coordinator on port 0 with several SDK clients in threads: plain, compressed, secure rounds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
import torch

from swarmnet.coordinator.store import CoordinatorStore
from swarmnet.coordinator.strategies import strategy_config
from swarmnet.federated import ClientConfig, FederatedClient
from swarmnet.federated.privacy import PrivacyConfig
from tests.integration.federated.harness import coordinator_config, make_client, run_all, running

pytestmark = pytest.mark.timeout(120)


def _clients(address: str, count: int, **config: object) -> list[FederatedClient]:
    return [make_client(address, seed, **config) for seed in range(count)]


def _close(clients: list[FederatedClient]) -> None:
    for client in clients:
        client.close()


def test_fedavg_rounds_complete_and_persist(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path, rounds=3)
    with running(config) as coordinator:
        clients = _clients(coordinator.address, 3)
        try:
            results = run_all(clients, lambda c: c.run(timeout_s=60))
            status = clients[0].connection.status()
        finally:
            _close(clients)
    assert [len(r) for r in results] == [3, 3, 3]
    assert status.global_version == 3
    assert status.phase == "done"
    assert [h.outcome for h in status.history] == ["completed"] * 3
    assert all(len(h.contributors) == 3 for h in status.history)
    state = CoordinatorStore(tmp_path).load()
    assert state is not None
    assert state.next_round == 4
    assert state.version == 3
    losses = [h.train_loss for h in status.history]
    assert losses[-1] < losses[0], f"training loss should fall across rounds: {losses}"
    dense = 4 * state.schema.numel
    assert all(h.uplink_bytes >= 3 * dense for h in status.history)  # codec none: fp32 plus framing


def test_compressed_updates_send_far_fewer_bytes(tmp_path: Path) -> None:
    config = coordinator_config(tmp_path, rounds=2, codec="topk", topk_ratio=0.1)
    with running(config) as coordinator:
        clients = _clients(coordinator.address, 3)
        try:
            results = run_all(clients, lambda c: c.run(timeout_s=60))
        finally:
            _close(clients)
        state = coordinator.server.engine.state  # type: ignore[union-attr]
    dense = 4 * state.schema.numel
    sent = [r.uplink_bytes for rs in results for r in rs]
    assert len(sent) == 6
    assert max(sent) < dense / 4, (sent, dense)
    assert state.version == 2
    assert clients[0].encoder.feedback.residual("adapter").abs().sum() > 0  # what top-k left out is kept


def _final_adapter(tmp_path: Path, secure: bool) -> torch.Tensor:
    config = coordinator_config(tmp_path, rounds=1, secure_aggregation=secure)
    with running(config) as coordinator:
        clients = _clients(coordinator.address, 3)
        try:
            run_all(clients, lambda c: c.run(timeout_s=60))
        finally:
            _close(clients)
        engine = coordinator.server.engine
        assert engine is not None
        assert engine.state.history[-1].outcome == "completed"
        assert engine.state.history[-1].secure_aggregation is secure
        return engine.state.adapter.clone()


def test_secure_aggregation_gives_the_plain_aggregate(tmp_path: Path) -> None:
    plain = _final_adapter(tmp_path / "plain", secure=False)
    secure = _final_adapter(tmp_path / "secure", secure=True)
    # Same clients, same data, same seeds: only the aggregation differs. 32-bit field, clip 1.0:
    # each value is off by at most one quantization step (clip / levels) per client.
    field_step = 1.0 / ((2**31 - 1) // 16)
    assert torch.allclose(plain, secure, atol=3 * field_step + 1e-6), (plain - secure).abs().max()


@pytest.mark.parametrize("strategy", ["fedadam", "fedyogi", "trimmed_mean", "centered_clip"])
def test_every_strategy_runs_a_round(tmp_path: Path, strategy: str) -> None:
    config = replace(
        coordinator_config(tmp_path, rounds=1), strategy=strategy_config(strategy), strategy_name=strategy
    )
    with running(config) as coordinator:
        clients = _clients(coordinator.address, 3)
        try:
            run_all(clients, lambda c: c.run(timeout_s=60))
            status = clients[0].connection.status()
        finally:
            _close(clients)
    assert status.strategy == strategy
    assert status.history[-1].outcome == "completed"
    assert status.global_version == 1


@pytest.mark.parametrize("placement", ["central", "distributed"])
def test_differential_privacy_reports_a_growing_epsilon(
    tmp_path: Path, placement: Literal["central", "distributed"]
) -> None:
    privacy = PrivacyConfig(clip_norm=0.05, noise_multiplier=1.0, placement=placement)
    secure = placement == "distributed"  # distributed noise is what secure aggregation pairs with
    config = replace(coordinator_config(tmp_path, rounds=2, secure_aggregation=secure), privacy=privacy)
    with running(config) as coordinator:
        clients = _clients(coordinator.address, 3)
        try:
            run_all(clients, lambda c: c.run(timeout_s=60))
            status = clients[0].connection.status()
        finally:
            _close(clients)
    epsilons = [h.epsilon for h in status.history]
    assert [h.outcome for h in status.history] == ["completed", "completed"]
    assert 0 < epsilons[0] < epsilons[1] < float("inf")
    assert status.epsilon == epsilons[1]
    assert CoordinatorStore(tmp_path).load().accountant  # type: ignore[union-attr]


def test_peft_lora_clients_federate_only_the_adapter(tmp_path: Path) -> None:
    pytest.importorskip("peft", reason="the SDK's LoRA wrapper is peft")
    from swarmnet.models.classifiers import DigitsMLP, digits_mlp, lora_config

    def client(address: str, seed: int) -> FederatedClient:
        generator = torch.Generator().manual_seed(seed)
        data = [(torch.rand(16, 64, generator=generator), torch.randint(0, 10, (16,), generator=generator))]
        config = lora_config(list(DigitsMLP.target_modules), task_type=None, modules_to_save=())
        torch.manual_seed(0)  # the same LoRA initialisation on every client
        return FederatedClient(digits_mlp(seed=0), data, ClientConfig(address=address, poll_s=1.0), lora=config)

    first = client("127.0.0.1:1", 0)
    initial = first.adapter_state()
    first.close()
    assert initial
    assert all("lora_" in name for name in initial)  # the frozen base never travels
    with running(coordinator_config(tmp_path, rounds=2), initial) as coordinator:
        clients = [client(coordinator.address, seed) for seed in range(3)]
        try:
            results = run_all(clients, lambda c: c.run(timeout_s=60))
        finally:
            _close(clients)
    assert [len(r) for r in results] == [2, 2, 2]
