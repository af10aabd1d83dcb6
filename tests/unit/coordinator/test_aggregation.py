"""The coordinator's round aggregation: weights, DP clipping at the server, noise placement."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from swarmnet.coordinator.aggregation import aggregate_round
from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.open_round import OpenRound, Submission
from swarmnet.coordinator.proto import federated_pb2 as pb
from swarmnet.coordinator.strategies import ServerState
from swarmnet.federated.privacy import PrivacyConfig
from swarmnet.federated.secure_update import secure_weight

LENGTH = 50


def _round(*deltas: tuple[str, torch.Tensor, int]) -> OpenRound:
    round_ = OpenRound(
        number=1, version=0, nonce=b"n" * 16, selected=tuple(c for c, _, _ in deltas), config=pb.RoundConfig(),
        opened=0.0, deadline=1.0, length=LENGTH,
    )  # fmt: skip
    for client, delta, samples in deltas:
        round_.submissions[client] = Submission(client, samples, 4 * LENGTH, 1.0, delta=delta)
    return round_


def test_fedavg_weights_by_samples(tmp_path: Path) -> None:
    config = CoordinatorConfig(state_dir=tmp_path)
    ones, threes = torch.ones(LENGTH), torch.full((LENGTH,), 3.0)
    result = aggregate_round(_round(("a", ones, 1), ("b", threes, 3)), torch.zeros(LENGTH), ServerState(), config)
    assert torch.allclose(result.adapter, torch.full((LENGTH,), 2.5))
    assert result.contributors == ("a", "b")


def test_server_clips_every_update_under_differential_privacy(tmp_path: Path) -> None:
    privacy = PrivacyConfig(clip_norm=0.1, noise_multiplier=1e-6, placement="central")
    config = replace(CoordinatorConfig(state_dir=tmp_path), privacy=privacy)
    huge = torch.full((LENGTH,), 1e3)  # a client that skipped its clipping
    result = aggregate_round(_round(("a", huge, 1), ("b", -huge, 100)), torch.zeros(LENGTH), ServerState(), config)
    # Clipped to norm 0.1 each and weighted uniformly: the two cancel, up to the (tiny) noise.
    assert result.adapter.norm() < 1e-3


def test_distributed_noise_is_left_to_the_clients(tmp_path: Path) -> None:
    privacy = PrivacyConfig(clip_norm=1.0, noise_multiplier=5.0, placement="distributed")
    config = replace(CoordinatorConfig(state_dir=tmp_path), privacy=privacy)
    small = torch.full((LENGTH,), 0.01)
    result = aggregate_round(_round(("a", small, 1), ("b", small, 1)), torch.zeros(LENGTH), ServerState(), config)
    assert torch.allclose(result.adapter, small)  # no noise added by the coordinator


@pytest.mark.parametrize(("samples", "cap", "weight"), [(5, 10, 0.5), (20, 10, 1.0), (3, 0, 1.0)])
def test_secure_weights(samples: int, cap: int, weight: float) -> None:
    assert secure_weight(samples, cap) == weight
