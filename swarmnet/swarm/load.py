"""Load tables of SWARM stages: who serves each stage, how fast, and how much work the stage gets.

Throughputs arrive from other peers' records, so every number is sanitized before it steers a decision:
a missing, non-finite, zero or negative measurement counts as a small share of the swarm's median, and a claim
is capped at a multiple of that median, so one server cannot make its stage look over- or under-served
by much. Demands get the same treatment with the median demand as their fallback. A peer listed in more
than one stage (a stale record after a move, or a peer claiming every stage) counts only in the first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from swarmnet.errors import ConfigError

__all__ = ["LoadBounds", "ServerLoad", "StageLoad", "StageView", "sanitize"]


@dataclass(frozen=True)
class ServerLoad:
    """One server of a stage and its measured throughput in samples/s (``None``: not measured yet)."""

    peer: str
    throughput: float | None = None


@dataclass(frozen=True)
class StageLoad:
    """One pipeline stage: its servers and its demand.

    ``demand`` is the samples/s the trainers push through the stage, or a relative cost per sample when
    stages differ in cost; only ratios between stages matter. A stage's position in the load table is its
    index.
    """

    servers: tuple[ServerLoad, ...] = ()
    demand: float = 1.0


@dataclass(frozen=True, kw_only=True)
class LoadBounds:
    """How claimed numbers are clamped before they count."""

    max_throughput: float = 1e9  # samples/s; anything above is not a measurement
    max_over_median: float = 4.0  # one server counts at most this multiple of the swarm's median
    unmeasured_share: float = 0.1  # a server with no usable measurement counts as this share of the median
    fallback_throughput: float = 1.0  # the "median" when no server has a usable measurement
    min_demand: float = 1e-6
    max_demand: float = 1e9

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if not 0 < self.max_throughput < math.inf or not 1 <= self.max_over_median < math.inf:
            raise ConfigError(f"need 0 < max_throughput and 1 <= max_over_median: {self}")
        if not 0 < self.unmeasured_share <= 1 or not 0 < self.fallback_throughput <= self.max_throughput:
            raise ConfigError(f"need 0 < unmeasured_share <= 1 and 0 < fallback_throughput <= max: {self}")
        if not 0 < self.min_demand <= self.max_demand < math.inf:
            raise ConfigError(f"need 0 < min_demand <= max_demand: {self}")


@dataclass(frozen=True)
class StageView:
    """A stage after sanitizing: each server's counted throughput, and the stage's demand."""

    servers: tuple[tuple[str, float], ...]
    demand: float

    @property
    def throughput(self) -> float:
        """The stage's total counted throughput (samples/s)."""
        return sum(speed for _, speed in self.servers)

    @property
    def ratio(self) -> float:
        """Throughput per unit of demand: how well served the stage is (0 for a stage with no server)."""
        return self.throughput / self.demand


def _usable(value: float | None, limit: float) -> float | None:
    """``value`` if it is a plausible measurement (finite, positive, at most ``limit``), else ``None``."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return min(float(value), limit)


def sanitize(loads: Sequence[StageLoad], bounds: LoadBounds) -> list[StageView]:
    """The load table as decisions see it: every throughput and demand clamped (see the module doc)."""
    claims = [_usable(s.throughput, bounds.max_throughput) for stage in loads for s in stage.servers]
    measured = [c for c in claims if c is not None]
    median = statistics.median(measured) if measured else bounds.fallback_throughput
    cap, floor = median * bounds.max_over_median, median * bounds.unmeasured_share
    demands = [_usable(stage.demand, bounds.max_demand) for stage in loads]
    valid = [d for d in demands if d is not None]
    typical = statistics.median(valid) if valid else 1.0
    views, seen = [], set()
    for stage, demand in zip(loads, demands, strict=True):
        servers = []
        for server in stage.servers:
            if server.peer in seen:
                continue
            seen.add(server.peer)
            claim = _usable(server.throughput, bounds.max_throughput)
            servers.append((server.peer, floor if claim is None else min(claim, cap)))
        counted = max(bounds.min_demand, typical if demand is None else demand)
        views.append(StageView(servers=tuple(servers), demand=counted))
    return views
