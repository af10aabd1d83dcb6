"""The balanced optimum against brute force on small cases, and the greedy assignment's quality."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from swarmnet.errors import ConfigError
from swarmnet.swarm import balanced_optimum, greedy_assignment


def brute_force(throughputs: list[float], demands: list[float]) -> float:
    """The best bottleneck over every assignment, tried one by one."""
    best = 0.0
    for assignment in itertools.product(range(len(demands)), repeat=len(throughputs)):
        sums = [0.0] * len(demands)
        for speed, stage in zip(throughputs, assignment, strict=True):
            sums[stage] += speed
        best = max(best, min(s / d for s, d in zip(sums, demands, strict=True)))
    return best


def cases(count: int) -> list[tuple[list[float], list[float]]]:
    rng = random.Random(23)
    out = []
    for _ in range(count):
        stages = rng.randint(1, 4)
        servers = rng.randint(0, 8 if stages < 4 else 7)
        out.append(
            (
                [round(rng.uniform(0.2, 3.0), 2) for _ in range(servers)],
                [rng.choice([0.5, 1.0, 2.0]) for _ in range(stages)],
            )
        )
    return out


@pytest.mark.parametrize(("throughputs", "demands"), cases(40))
def test_exact_matches_brute_force(throughputs: list[float], demands: list[float]) -> None:
    assert balanced_optimum(throughputs, demands) == pytest.approx(brute_force(throughputs, demands), rel=1e-12)


@pytest.mark.parametrize(("throughputs", "demands"), cases(40))
def test_greedy_is_a_reachable_lower_bound(throughputs: list[float], demands: list[float]) -> None:
    exact = brute_force(throughputs, demands)
    greedy = balanced_optimum(throughputs, demands, exact_up_to=0)
    assert greedy <= exact * (1 + 1e-12)
    # Largest-first to the bottleneck, then local moves and swaps: within 3/4 of the optimum here.
    assert greedy >= 0.75 * exact


def test_greedy_assignment_uses_every_server_once() -> None:
    throughputs = [3.0, 1.0, 2.0, 2.0, 0.5]
    stages = greedy_assignment(throughputs, [1.0, 1.0])
    assert sorted(s for stage in stages for s in stage) == sorted(throughputs)
    assert sorted(sum(stage) for stage in stages) == [4.0, 4.5]


def test_many_servers_come_close_to_the_fluid_bound() -> None:
    rng = random.Random(5)
    throughputs = [rng.uniform(0.5, 2.0) for _ in range(200)]
    demands = [1.0, 2.0, 1.0, 1.0]
    fluid = sum(throughputs) / sum(demands)  # no assignment beats a perfectly even split
    assert 0.98 * fluid <= balanced_optimum(throughputs, demands) <= fluid


def test_simple_values() -> None:
    assert balanced_optimum([1.0] * 8, [1.0] * 4) == 2.0
    assert balanced_optimum([1.0] * 3, [1.0] * 4) == 0.0  # a stage stays empty
    assert balanced_optimum([], [1.0]) == 0.0


@pytest.mark.parametrize(
    ("throughputs", "demands"), [([1.0], []), ([1.0], [0.0]), ([math.nan], [1.0]), ([-1.0], [1.0])]
)
def test_invalid_inputs(throughputs: list[float], demands: list[float]) -> None:
    with pytest.raises(ConfigError):
        balanced_optimum(throughputs, demands)
