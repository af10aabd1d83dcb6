"""A new stage server joins the stage with the least throughput per unit of demand."""

from __future__ import annotations

import math

import pytest

from swarmnet.errors import ConfigError
from swarmnet.swarm import LoadBounds, ServerLoad, StageLoad, choose_stage_to_join


def stage(*speeds: float | None, demand: float = 1.0, prefix: str = "") -> StageLoad:
    """A stage whose servers are named ``<prefix><index>``."""
    return StageLoad(tuple(ServerLoad(f"{prefix}{i}", s) for i, s in enumerate(speeds)), demand)


def test_least_throughput_per_demand() -> None:
    loads = [stage(3.0, 3.0, prefix="a"), stage(2.0, prefix="b"), stage(4.0, prefix="c")]
    assert choose_stage_to_join(loads, 1.0) == 1
    # Stage 2 costs three times as much per sample: 4 / 3 is the least served.
    loads = [stage(3.0, 3.0, prefix="a"), stage(2.0, prefix="b"), stage(4.0, demand=3.0, prefix="c")]
    assert choose_stage_to_join(loads, 1.0) == 2


def test_empty_stage_always_first() -> None:
    loads = [stage(0.01, demand=1e6, prefix="a"), stage(prefix="b"), stage(1.0, demand=1e-3, prefix="c")]
    assert choose_stage_to_join(loads, 5.0) == 1


def test_ties_fewer_servers_then_lower_index() -> None:
    assert choose_stage_to_join([stage(1.0, 1.0, prefix="a"), stage(2.0, prefix="b")], 1.0) == 1
    assert choose_stage_to_join([stage(2.0, prefix="a"), stage(2.0, prefix="b")], 1.0) == 0
    assert choose_stage_to_join([stage(), stage(), stage()], None) == 0


@pytest.mark.parametrize("claim", [math.nan, math.inf, 1e30, -5.0])
def test_hostile_claims_do_not_steer(claim: float) -> None:
    # Stage 0 would look best served if the claim counted; clamped, stage 0 holds 1 + at most 4 x median.
    loads = [stage(1.0, claim, prefix="a"), stage(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, prefix="b")]
    assert choose_stage_to_join(loads, 1.0) == 0


@pytest.mark.parametrize("demand", [math.nan, -1.0, 0.0, math.inf])
def test_hostile_demand_counts_as_typical(demand: float) -> None:
    loads = [stage(2.0, prefix="a"), stage(1.0, demand=demand, prefix="b"), stage(3.0, prefix="c")]
    assert choose_stage_to_join(loads, 1.0) == 1


def test_unmeasured_server_counts_small() -> None:
    # Stage 0's second server has no measurement yet: it counts as a tenth of the median, not as a full server.
    loads = [stage(1.0, None, prefix="a"), stage(1.0, 1.0, prefix="b")]
    assert choose_stage_to_join(loads, 1.0) == 0


def test_peer_listed_twice_counts_once() -> None:
    loads = [stage(1.0, 0.5, prefix="x"), StageLoad((ServerLoad("x0", 1.0), ServerLoad("y", 1.0)))]
    assert choose_stage_to_join(loads, 1.0) == 1  # stage 1 counts only y: 1.0 against stage 0's 1.5


def test_invalid_bounds_and_empty_table() -> None:
    with pytest.raises(ConfigError):
        choose_stage_to_join([stage(1.0)], 1.0, LoadBounds(max_over_median=0.5))
    with pytest.raises(ConfigError):
        choose_stage_to_join([], 1.0)
