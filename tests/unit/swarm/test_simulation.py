"""Rebalancing over many periods (pure Python, no transport): it converges and it does not thrash."""

from __future__ import annotations

from collections import defaultdict

import pytest

from swarmnet.swarm import RebalanceConfig, balanced_optimum
from tests.unit.swarm.sim import Server, bottleneck, run, spread

CONFIG = RebalanceConfig()


def skewed(stages: int, per_stage: int, survivors: int) -> list[Server]:
    """``stages`` stages of ``per_stage`` mixed-speed servers, after stage 0 lost all but ``survivors``."""
    speeds = spread(stages * per_stage)
    servers = [Server(f"p{i:03d}", speed, i % stages) for i, speed in enumerate(speeds)]
    stage0 = [s for s in servers if s.stage == 0]
    return [s for s in servers if s.stage != 0] + stage0[:survivors]


@pytest.mark.parametrize(
    ("stages", "per_stage", "survivors", "demands"),
    [(4, 10, 2, (1.0, 1.0, 1.0, 1.0)), (3, 16, 1, (1.0, 2.0, 1.0)), (6, 12, 1, (1.0,) * 6)],
)
def test_recovers_from_a_skewed_start(stages: int, per_stage: int, survivors: int, demands: tuple[float, ...]) -> None:
    servers = skewed(stages, per_stage, survivors)
    optimum = balanced_optimum([s.speed for s in servers], demands)
    start = bottleneck(servers, demands)
    assert start < 0.5 * optimum  # the start is really skewed
    outcome = run(servers, demands, CONFIG, periods=10, noise=0.03, seed=stages)
    assert max(outcome.bottlenecks) >= 0.8 * optimum, (start, outcome.bottlenecks, optimum)
    assert max(outcome.moves_per_server().values()) <= 2
    # The bottleneck never gets worse than it was by more than the measurement noise allows.
    assert min(outcome.bottlenecks) >= start


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_no_ping_pong_between_nearly_equal_stages(noise: float) -> None:
    servers = [Server(f"a{i}", 1.0, 0) for i in range(9)] + [Server(f"b{i}", 1.0, 1) for i in range(8)]
    outcome = run(servers, (1.0, 1.0), CONFIG, periods=50, noise=noise, seed=1)
    assert outcome.moves == []
    assert len(outcome.bottlenecks) == 50


def test_settles_without_moving_back() -> None:
    # Start unbalanced under noisy measurements: after the first moves the swarm settles, and no server
    # ever returns to a stage it left.
    servers = [Server(f"a{i}", 1.0, 0) for i in range(14)] + [Server(f"b{i}", 1.0, 1) for i in range(2)]
    outcome = run(servers, (1.0, 1.0), CONFIG, periods=50, noise=0.05, seed=2)
    left: dict[str, set[int]] = defaultdict(set)
    for move in outcome.moves:
        assert move.target not in left[move.peer]
        left[move.peer].add(move.source)
    assert outcome.moves
    assert max(m.period for m in outcome.moves) < 10
    assert outcome.bottlenecks[-1] >= 0.8 * 8.0
