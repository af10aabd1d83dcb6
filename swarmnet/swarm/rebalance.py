"""When a stage server moves to another stage: SWARM's rebalancing rule with hysteresis.

Every period each server reads the same load table and computes the same plan (``plan_period``): while
some stage is over-served, a server of the most over-served stage moves to the bottleneck stage (the least
throughput per unit of demand). A move needs two things: the source serves at least ``min_gain`` more per
unit of demand than the bottleneck (nearly equal stages never trade servers), and after the move both
stages sit above the old bottleneck by at least ``min_step`` of what the mover brings (so the move back
is never allowed by the same rule). The source is judged with its largest other claim discounted to the
swarm's median, so no single claim pushes servers out of its stage. The plan is simulated move by move,
so it never overshoots; each stage gives up at most ``move_fraction`` of its servers per period, and a
hash of the peer id and the period picks which, deterministic yet rotating. A server follows the plan
only for itself (``plan_move``) and only if its own history allows: a cooldown after each move and at
most ``max_moves`` moves in any window of ``window_periods``. docs/swarm.md has the rule and the
argument that it cannot cycle.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from swarmnet.errors import ConfigError
from swarmnet.swarm.join import neediest_stage
from swarmnet.swarm.load import LoadBounds, StageLoad, StageView, sanitize

__all__ = ["Move", "MoveHistory", "RebalanceConfig", "plan_move", "plan_period"]


@dataclass(frozen=True, kw_only=True)
class RebalanceConfig:
    """Hysteresis of the rebalancer; a period is one round of reading the load table."""

    min_gain: float = 0.1  # the source must serve this fraction more per demand than the bottleneck
    min_step: float = 0.5  # the bottleneck must rise by this share of the mover's throughput per demand
    cooldown_periods: int = 3  # a server that moved stays put for this many periods
    max_moves: int = 2  # at most this many moves per server ...
    window_periods: int = 20  # ... in any window of this many periods
    move_fraction: float = 0.25  # a stage gives up at most this share of its servers per period (at least 1)
    salt: str = ""  # mixed into the per-period hash (e.g. the run name), so runs rotate differently
    bounds: LoadBounds = field(default_factory=LoadBounds)

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if not 0 <= self.min_gain < math.inf or not 0 < self.min_step < 1 or not 0 < self.move_fraction <= 1:
            raise ConfigError(f"need min_gain >= 0, 0 < min_step < 1 and 0 < move_fraction <= 1: {self}")
        if self.cooldown_periods < 0 or self.max_moves < 0 or self.window_periods < 1:
            raise ConfigError(f"need cooldown_periods >= 0, max_moves >= 0, window_periods >= 1: {self}")
        self.bounds.validate()


@dataclass(frozen=True)
class Move:
    """One server moving from stage ``source`` to stage ``target`` in ``period``."""

    peer: str
    source: int
    target: int
    period: int
    bottleneck_before: float  # the target's throughput per demand before the move
    worst_after: float  # the lesser of the two stages' throughput per demand after it (source discounted)


@dataclass(frozen=True)
class MoveHistory:
    """The periods in which this server moved, oldest first."""

    moves: tuple[int, ...] = ()

    def record(self, period: int) -> MoveHistory:
        """This history with a move in ``period`` added."""
        return MoveHistory((*self.moves, period))

    def allows(self, period: int, config: RebalanceConfig) -> bool:
        """Whether a move in ``period`` respects the cooldown and the per-window limit."""
        if self.moves and period - self.moves[-1] < config.cooldown_periods:
            return False
        recent = sum(1 for moved in self.moves if period - moved < config.window_periods)
        return recent < config.max_moves


def _rank(peer: str, period: int, salt: str) -> bytes:
    """A per-period pseudo-random order of peers that every server computes alike."""
    return hashlib.blake2b(f"{salt}\x00{period}\x00{peer}".encode(), digest_size=8).digest()


class _Table:
    """The mutable copy of the load table that a plan is simulated on."""

    def __init__(self, views: Sequence[StageView]) -> None:
        self.servers = [dict(view.servers) for view in views]
        self.demands = [view.demand for view in views]
        speeds = [speed for view in views for _, speed in view.servers]
        self.median = statistics.median(speeds) if speeds else 0.0

    def views(self) -> list[StageView]:
        return [StageView(tuple(s.items()), d) for s, d in zip(self.servers, self.demands, strict=True)]

    def ratio_after(self, stage: int, delta: float) -> float:
        return (sum(self.servers[stage].values()) + delta) / self.demands[stage]


def _try_source(
    table: _Table, source: int, target: int, frozen: set[str], config: RebalanceConfig, period: int
) -> Move | None:
    """The first server of ``source`` (in this period's hash order) whose move passes the rule, if any."""
    bottleneck = table.ratio_after(target, 0.0)
    if table.ratio_after(source, 0.0) < bottleneck * (1 + config.min_gain):
        return None
    movable = sorted(
        (peer for peer in table.servers[source] if peer not in frozen),
        key=lambda peer: _rank(peer, period, config.salt),
    )
    for peer in movable:
        speed = table.servers[source][peer]
        # The source must stay above the bar even if its biggest other claim were only a median server's,
        # so no single claim can push servers out of its stage.
        others = [s for p, s in table.servers[source].items() if p != peer]
        doubt = max(0.0, max(others, default=0.0) - table.median)
        worst = min(table.ratio_after(source, -speed - doubt), table.ratio_after(target, speed))
        if worst > bottleneck and worst >= bottleneck + config.min_step * speed / table.demands[target]:
            return Move(peer, source, target, period, bottleneck, worst)
    return None


def plan_period(loads: Sequence[StageLoad], config: RebalanceConfig, *, period: int) -> list[Move]:
    """Every move the rule allows in ``period``, in order, ignoring the movers' own histories."""
    config.validate()
    table = _Table(sanitize(loads, config.bounds))
    quota = [max(1, math.floor(config.move_fraction * len(s))) for s in table.servers]
    moves: list[Move] = []
    moved: set[str] = set()
    while True:
        views = table.views()
        target = neediest_stage(views)
        # Most over-served first; a stage keeps its last server, and gives up at most its quota.
        order = sorted(range(len(views)), key=lambda i: (-views[i].ratio, -len(views[i].servers), i))
        sources = [i for i in order if i != target and len(table.servers[i]) > 1 and quota[i] > 0]
        move = next((m for i in sources if (m := _try_source(table, i, target, moved, config, period))), None)
        if move is None:
            return moves
        speed = table.servers[move.source].pop(move.peer)
        table.servers[move.target][move.peer] = speed
        quota[move.source] -= 1
        moved.add(move.peer)
        moves.append(move)


def plan_move(
    loads: Sequence[StageLoad], me: str, config: RebalanceConfig, history: MoveHistory, *, period: int
) -> Move | None:
    """This server's move in ``period``, or ``None`` to stay.

    Every server computes the same ``plan_period`` from the same table and takes only its own entry, so
    no server's claim can tell another to move: the others' numbers only enter through the sanitized
    table. A planned move is skipped while ``history`` forbids it (cooldown, moves per window).
    """
    mine = next((m for m in plan_period(loads, config, period=period) if m.peer == me), None)
    if mine is None or not history.allows(period, config):
        return None
    return mine
