"""The best pipeline throughput any assignment of servers to stages could reach.

A pipeline runs at its bottleneck: the least, over stages, of the stage's throughput per unit of demand.
``balanced_optimum`` maximizes that bottleneck over every assignment of the given servers. The problem is
NP-hard in general (it is max-min bin covering), so small cases are solved exactly by branch and bound
and larger ones by a greedy assignment followed by local improvement, which gives an assignment that is
reachable (a lower bound on the optimum, close to it when there are many servers per stage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from swarmnet.errors import ConfigError

__all__ = ["EXACT_UP_TO", "balanced_optimum", "greedy_assignment"]

EXACT_UP_TO = 12  # servers: up to this many the search is exhaustive (with pruning)


def _check(throughputs: Sequence[float], demands: Sequence[float]) -> None:
    if not demands or not all(math.isfinite(d) and d > 0 for d in demands):
        raise ConfigError(f"demands must be finite and positive, at least one stage: {list(demands)}")
    if not all(math.isfinite(t) and t >= 0 for t in throughputs):
        raise ConfigError(f"throughputs must be finite and non-negative: {list(throughputs)}")


def _bottleneck(sums: Sequence[float], demands: Sequence[float]) -> float:
    return min(s / d for s, d in zip(sums, demands, strict=True))


def greedy_assignment(throughputs: Sequence[float], demands: Sequence[float]) -> list[list[float]]:
    """Servers by decreasing throughput, each to the current bottleneck stage, then improved locally."""
    _check(throughputs, demands)
    stages: list[list[float]] = [[] for _ in demands]
    sums = [0.0] * len(demands)
    for speed in sorted(throughputs, reverse=True):
        stage = min(range(len(demands)), key=lambda i: (sums[i] / demands[i], i))
        stages[stage].append(speed)
        sums[stage] += speed
    while _improve(stages, sums, demands):
        pass
    return stages


def _improve(stages: list[list[float]], sums: list[float], demands: Sequence[float]) -> bool:
    """One move or swap into the bottleneck stage that lifts both stages above it; whether one was made."""
    low = min(range(len(demands)), key=lambda i: (sums[i] / demands[i], i))
    level = sums[low] / demands[low]
    for other in range(len(demands)):
        if other == low:
            continue
        for x in sorted(set(stages[other])):
            for y in [0.0, *sorted(set(stages[low]))]:  # 0.0: a plain move, no server comes back
                if x <= y:
                    continue
                delta = x - y
                if min((sums[low] + delta) / demands[low], (sums[other] - delta) / demands[other]) > level * (
                    1 + 1e-12
                ):
                    stages[other].remove(x)
                    stages[low].append(x)
                    if y:
                        stages[low].remove(y)
                        stages[other].append(y)
                    sums[low] += delta
                    sums[other] -= delta
                    return True
    return False


def _water_level(sums: Sequence[float], demands: Sequence[float], rest: float) -> float:
    """The highest bottleneck if ``rest`` throughput could be split freely (an upper bound)."""
    level = 0.0
    order = sorted(range(len(sums)), key=lambda i: sums[i] / demands[i])
    filled_demand, filled_sum = 0.0, 0.0
    for position, stage in enumerate(order):
        filled_demand += demands[stage]
        filled_sum += sums[stage]
        level = (filled_sum + rest) / filled_demand
        following = order[position + 1] if position + 1 < len(order) else None
        if following is None or level <= sums[following] / demands[following]:
            return level
    return level


def _exact(throughputs: Sequence[float], demands: Sequence[float], start: float) -> float:
    """Branch and bound over every assignment, servers by decreasing throughput."""
    speeds = sorted(throughputs, reverse=True)
    remaining = [sum(speeds[i:]) for i in range(len(speeds) + 1)]
    sums = [0.0] * len(demands)
    best = start

    def visit(index: int) -> None:
        nonlocal best
        if index == len(speeds):
            best = max(best, _bottleneck(sums, demands))
            return
        if _water_level(sums, demands, remaining[index]) <= best * (1 + 1e-12):
            return
        tried: set[tuple[float, float]] = set()
        for stage in sorted(range(len(demands)), key=lambda i: sums[i] / demands[i]):
            demand = demands[stage]
            if (sums[stage], demand) in tried:  # an identical stage was tried already
                continue
            tried.add((sums[stage], demand))
            sums[stage] += speeds[index]
            visit(index + 1)
            sums[stage] -= speeds[index]

    visit(0)
    return best


def balanced_optimum(throughputs: Sequence[float], demands: Sequence[float], exact_up_to: int = EXACT_UP_TO) -> float:
    """The highest bottleneck (throughput per unit of demand) any assignment of ``throughputs`` reaches.

    Exact for at most ``exact_up_to`` servers; above that, the greedy-and-improve assignment's bottleneck.
    Multiply by a stage's demand to get samples/s when demands are samples/s of one pipeline.
    """
    stages = greedy_assignment(throughputs, demands)
    found = _bottleneck([sum(s) for s in stages], demands)
    if len(throughputs) > exact_up_to:
        return found
    return _exact(throughputs, demands, found)
