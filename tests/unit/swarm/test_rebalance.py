"""The rebalancing rule on hand-made load tables: margin, cooldown, quota, hostile numbers."""

from __future__ import annotations

import math

import pytest

from swarmnet.errors import ConfigError
from swarmnet.swarm import MoveHistory, RebalanceConfig, ServerLoad, StageLoad, plan_move, plan_period

CONFIG = RebalanceConfig()


def stage(prefix: str, *speeds: float | None, demand: float = 1.0) -> StageLoad:
    """A stage whose servers are named ``<prefix><index>``."""
    return StageLoad(tuple(ServerLoad(f"{prefix}{i}", s) for i, s in enumerate(speeds)), demand)


def test_move_only_when_it_helps_by_the_margin() -> None:
    # 5 against 4: after a move 4 against 5, the bottleneck stays 4.
    assert plan_period([stage("a", *[1.0] * 5), stage("b", *[1.0] * 4)], CONFIG, period=0) == []
    # 6 against 4: after a move both are at 5, a whole server's worth above the bottleneck.
    moves = plan_period([stage("a", *[1.0] * 6), stage("b", *[1.0] * 4)], CONFIG, period=0)
    assert [(m.source, m.target) for m in moves] == [(0, 1)]
    assert moves[0].bottleneck_before == 4.0
    assert moves[0].worst_after == 5.0
    # A 60% imbalance margin rules the same move out.
    assert plan_period([stage("a", *[1.0] * 6), stage("b", *[1.0] * 4)], RebalanceConfig(min_gain=0.6), period=0) == []
    # Large stages: 43 against 40 is within 10%, so it stays; 46 against 40 is not, and one server moves.
    assert plan_period([stage("a", *[1.0] * 43), stage("b", *[1.0] * 40)], CONFIG, period=0) == []
    moves = plan_period([stage("a", *[1.0] * 46), stage("b", *[1.0] * 40)], CONFIG, period=0)
    assert [(m.source, m.target) for m in moves] == [(0, 1)]  # 45 against 41 is within 10% again


def test_moves_from_the_most_over_served_to_the_bottleneck() -> None:
    loads = [stage("a", *[1.0] * 6), stage("b", *[1.0] * 2, demand=0.5), stage("c", *[1.0] * 9), stage("d", 1.0, 1.0)]
    moves = plan_period(loads, CONFIG, period=3)
    assert moves[0].source == 2
    assert moves[0].target == 3
    assert moves[0].peer.startswith("c")


def test_demand_weights_the_stages() -> None:
    # Equal servers, but stage 1 costs twice as much per sample: it is the bottleneck (2 / 2 = 1 against 6).
    moves = plan_period([stage("a", *[1.0] * 6), stage("b", 1.0, 1.0, demand=2.0)], CONFIG, period=0)
    assert moves
    assert all((m.source, m.target) == (0, 1) for m in moves)


def test_only_a_fraction_of_a_stage_moves_per_period() -> None:
    loads = [stage("a", *[1.0] * 12), stage("b")]
    moves = plan_period(loads, CONFIG, period=0)
    assert len(moves) == 3  # a quarter of 12, though 6 would balance the stages
    movers = {m.peer for m in moves}
    # Every server computes the same plan; only the planned ones move.
    decided = {f"a{i}": plan_move(loads, f"a{i}", CONFIG, MoveHistory(), period=0) for i in range(12)}
    assert {peer for peer, move in decided.items() if move is not None} == movers


def test_the_movers_rotate_with_the_period() -> None:
    loads = [stage("a", *[1.0] * 12), stage("b", 1.0)]
    plans = [frozenset(m.peer for m in plan_period(loads, CONFIG, period=p)) for p in range(8)]
    assert plans[0] == frozenset(m.peer for m in plan_period(loads, CONFIG, period=0))  # deterministic
    assert len(set(plans)) > 1


def test_never_empties_a_stage() -> None:
    assert plan_period([stage("a", 10.0), stage("b")], CONFIG, period=0) == []


def test_cooldown_and_moves_per_window() -> None:
    config = RebalanceConfig(cooldown_periods=3, max_moves=2, window_periods=20)
    loads = [stage("a", *[1.0] * 8), stage("b", 1.0)]
    period = 30
    me = plan_period(loads, config, period=period)[0].peer
    assert plan_move(loads, me, config, MoveHistory(), period=period) is not None
    assert plan_move(loads, me, config, MoveHistory((period - 2,)), period=period) is None  # cooling down
    assert plan_move(loads, me, config, MoveHistory((period - 3,)), period=period) is not None
    assert plan_move(loads, me, config, MoveHistory((period - 15, period - 5)), period=period) is None  # 2 in window
    assert plan_move(loads, me, config, MoveHistory((period - 25, period - 5)), period=period) is not None
    assert plan_move(loads, "b0", config, MoveHistory(), period=period) is None  # not planned
    assert plan_move(loads, "stranger", config, MoveHistory(), period=period) is None


@pytest.mark.parametrize("claim", [math.nan, math.inf, 1e30, -1.0])
def test_one_liar_does_not_move_others(claim: float) -> None:
    # Three balanced stages; a liar in stage 0 makes it look over-served, but no single move lifts the bottleneck.
    loads = [stage("a", 1.0, 1.0, 1.0, claim), stage("b", *[1.0] * 4), stage("c", *[1.0] * 4)]
    assert plan_period(loads, CONFIG, period=0) == []


def test_huge_claims_count_as_the_cap() -> None:
    # With two stages a big claim can matter, but 1e30 counts exactly as 4 x the median, no more.
    def plan(claim: float) -> list[tuple[str, int, int]]:
        loads = [stage("a", *[1.0] * 6, claim), stage("b", 1.0, 1.0, 1.0)]
        return [(m.peer, m.source, m.target) for m in plan_period(loads, CONFIG, period=7)]

    assert plan(1e30) == plan(1e6) == plan(4.0) != []
    assert plan(math.nan) == plan(math.inf) == plan(-3.0) == plan(0.0)  # unusable: a tenth of the median


def test_hostile_demand_does_not_steer() -> None:
    for demand in (math.nan, -2.0, 0.0, math.inf):
        loads = [stage("a", *[1.0] * 4), stage("b", *[1.0] * 4, demand=demand), stage("c", *[1.0] * 4)]
        assert plan_period(loads, CONFIG, period=0) == []


@pytest.mark.parametrize(
    "config",
    [
        RebalanceConfig(min_gain=-0.1),
        RebalanceConfig(min_step=1.0),
        RebalanceConfig(move_fraction=0.0),
        RebalanceConfig(cooldown_periods=-1),
        RebalanceConfig(window_periods=0),
    ],
)
def test_invalid_config(config: RebalanceConfig) -> None:
    with pytest.raises(ConfigError):
        config.validate()
    with pytest.raises(ConfigError):
        plan_period([stage("a", 1.0)], config, period=0)
