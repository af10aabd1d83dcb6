"""A pure-Python loop of rebalancing periods: every server reads the same table and follows ``plan_move``."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from swarmnet.swarm import Move, MoveHistory, RebalanceConfig, ServerLoad, StageLoad, plan_move


@dataclass
class Server:
    """A simulated stage server: its true speed, its stage and its own move history."""

    peer: str
    speed: float
    stage: int
    history: MoveHistory = field(default_factory=MoveHistory)


@dataclass
class Outcome:
    """What a run did: the true bottleneck after each period, and every move made."""

    bottlenecks: list[float] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)

    def moves_per_server(self) -> Counter[str]:
        return Counter(move.peer for move in self.moves)


def spread(count: int, low: float = 0.5, high: float = 2.0) -> list[float]:
    """``count`` mixed speeds, evenly from ``low`` to ``high``, in a shuffled but fixed order."""
    speeds = [low + (high - low) * i / max(1, count - 1) for i in range(count)]
    random.Random(count).shuffle(speeds)
    return speeds


def table(servers: Sequence[Server], demands: Sequence[float], noise: float, rng: random.Random) -> list[StageLoad]:
    """The load table the servers publish: true speeds with multiplicative measurement noise."""
    stages: list[list[ServerLoad]] = [[] for _ in demands]
    for server in servers:
        measured = server.speed * (1 + rng.uniform(-noise, noise))
        stages[server.stage].append(ServerLoad(server.peer, measured))
    return [StageLoad(tuple(s), d) for s, d in zip(stages, demands, strict=True)]


def bottleneck(servers: Sequence[Server], demands: Sequence[float]) -> float:
    """The pipeline's true bottleneck: the least stage throughput per unit of demand."""
    sums = [0.0] * len(demands)
    for server in servers:
        sums[server.stage] += server.speed
    return min(s / d for s, d in zip(sums, demands, strict=True))


def run(
    servers: list[Server],
    demands: Sequence[float],
    config: RebalanceConfig,
    periods: int,
    noise: float = 0.0,
    seed: int = 0,
) -> Outcome:
    """``periods`` rebalancing periods; servers move in place."""
    rng = random.Random(seed)
    outcome = Outcome()
    for period in range(periods):
        loads = table(servers, demands, noise, rng)
        decided = [
            (server, plan_move(loads, server.peer, config, server.history, period=period)) for server in servers
        ]
        for server, move in decided:
            if move is not None:
                assert move.source == server.stage
                server.stage = move.target
                server.history = server.history.record(period)
                outcome.moves.append(move)
        outcome.bottlenecks.append(bottleneck(servers, demands))
    return outcome
