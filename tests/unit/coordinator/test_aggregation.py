"""The coordinator's round aggregation: weights, DP clipping and noise, refusing non-finite results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from swarmnet.coordinator.aggregation import NonFiniteAggregate, aggregate_round
from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.open_round import OpenRound, Submission
from swarmnet.coordinator.strategies import ServerState, strategy_config
from swarmnet.federated.privacy import PrivacyConfig
from swarmnet.federated.secure_update import secure_weight
from swarmnet.proto import federated_pb2 as pb

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
    ones, fours = torch.ones(LENGTH), torch.full((LENGTH,), 4.0)
    result = aggregate_round(_round(("a", ones, 1), ("b", fours, 2)), torch.zeros(LENGTH), ServerState(), config)
    assert torch.allclose(result.adapter, torch.full((LENGTH,), 3.0))
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


def test_an_overflowing_sum_is_refused(tmp_path: Path) -> None:
    config = CoordinatorConfig(state_dir=tmp_path)
    flood = torch.full((LENGTH,), 3.0e38)  # finite, as every accepted update is
    start = torch.full((LENGTH,), 3.0e38)  # where one such round already took the adapter
    with pytest.raises(NonFiniteAggregate, match="adapter"):
        aggregate_round(_round(("a", flood, 1), ("b", flood, 1)), start, ServerState(), config)
    # From a small adapter the same round stays finite, and is taken.
    result = aggregate_round(_round(("a", flood, 1), ("b", flood, 1)), torch.zeros(LENGTH), ServerState(), config)
    assert bool(torch.isfinite(result.adapter).all())


def test_an_adaptive_optimizer_whose_moment_overflows_is_refused(tmp_path: Path) -> None:
    config = replace(CoordinatorConfig(state_dir=tmp_path), strategy=strategy_config("fedadam"))
    big = torch.full((LENGTH,), 1.0e20)  # squared into v: 1e40, past float32
    with pytest.raises(NonFiniteAggregate, match=r"opt\.v"):
        aggregate_round(_round(("a", big, 1), ("b", big, 1)), torch.zeros(LENGTH), ServerState(), config)


def test_private_rounds_divide_by_the_expected_participants(tmp_path: Path) -> None:
    privacy = PrivacyConfig(clip_norm=10.0, noise_multiplier=0.0, placement="central")
    config = replace(CoordinatorConfig(state_dir=tmp_path), privacy=privacy)
    round_ = _round(("a", torch.ones(LENGTH), 1), ("b", torch.ones(LENGTH), 1), ("c", torch.ones(LENGTH), 1))
    round_.sample_rate, round_.population = 0.5, 4  # 3 drawn where 2 were expected
    result = aggregate_round(round_, torch.zeros(LENGTH), ServerState(), config)
    assert torch.allclose(result.mean, torch.full((LENGTH,), 3 / 2))


def test_central_noise_has_std_z_c_over_the_expected_participants(tmp_path: Path) -> None:
    privacy = PrivacyConfig(clip_norm=0.5, noise_multiplier=2.0, placement="central")
    config = replace(CoordinatorConfig(state_dir=tmp_path), privacy=privacy)
    zeros = torch.zeros(LENGTH)
    means = [
        aggregate_round(_round(("a", zeros, 1), ("b", zeros, 1)), zeros, ServerState(), config).mean for _ in range(40)
    ]
    noise = torch.stack(means)
    assert float(noise.std()) == pytest.approx(2.0 * 0.5 / 2, rel=0.1)
    assert not torch.equal(means[0], means[1])  # fresh from the OS each time, even for the same round


def test_the_reported_loss_weighs_capped_claims(tmp_path: Path) -> None:
    config = CoordinatorConfig(state_dir=tmp_path)
    round_ = _round(
        ("a", torch.zeros(LENGTH), 10), ("b", torch.zeros(LENGTH), 10), ("liar", torch.zeros(LENGTH), 10**12)
    )
    round_.submissions["liar"] = replace(round_.submissions["liar"], train_loss=100.0)
    result = aggregate_round(round_, torch.zeros(LENGTH), ServerState(), config)
    assert result.train_loss == pytest.approx((10 * 1.0 + 10 * 1.0 + 20 * 100.0) / 40)
