"""Choosing a replica: by expected time, at random in proportion to speed, avoiding recent failures.

A replica's expected time for a call is its latency plus the wait for its queue and our samples
at its throughput. Latency is what we measured (an EWMA over our own calls to it) once we have
called it; claimed throughput and queue are clamped to ``RoutingConfig``'s bounds, so a server that
claims to be infinitely fast draws at most its share at the ceiling, and its measured latency soon
shows the truth. The pick is random with weight ``1 / expected time`` (SWARM's stochastic wiring:
with idle queues and small latency that is proportional to throughput), among replicas expected to
be at most ``max_slowdown`` times slower than the best. A replica that failed is banned for ``ban_time``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from swarmnet.remote.config import RoutingConfig
from swarmnet.remote.directory import Replica

__all__ = ["ReplicaRouter"]


@dataclass
class _PeerStats:
    latency: float | None = None  # EWMA of measured call seconds
    banned_until: float = 0.0
    failures: int = 0


class ReplicaRouter:
    """Per-peer measurements and the replica choice; one per client."""

    def __init__(self, config: RoutingConfig | None = None) -> None:
        self.config = config or RoutingConfig()
        self.config.validate()
        self._rng = random.Random(self.config.seed)
        self._peers: dict[str, _PeerStats] = {}

    def expected_time(self, replica: Replica, samples: int, unmeasured: float | None = None) -> float:
        """Seconds we expect a call of ``samples`` samples to take on ``replica``; ``unmeasured`` is the
        latency assumed for a replica we never called (default ``default_latency``)."""
        c = self.config
        throughput = min(max(replica.throughput, c.min_throughput), c.max_throughput)
        queue = min(replica.queue, c.max_queue)
        measured = self._peers.get(replica.peer_id, _PeerStats()).latency
        if measured is not None:  # already includes its compute for a typical call
            return max(measured, c.min_latency) + queue / throughput
        latency = c.default_latency if unmeasured is None else max(unmeasured, c.min_latency)
        return latency + (queue + samples) / throughput

    def choose(
        self, replicas: Sequence[Replica], now: float, *, samples: int = 1, exclude: frozenset[str] = frozenset()
    ) -> Replica | None:
        """A replica to call, or ``None`` if every one is excluded or banned."""
        usable = [r for r in replicas if r.peer_id not in exclude and not self.banned(r.peer_id, now)]
        if not usable:
            return None
        # A replica never called is assumed as fast as the fastest one we measured: otherwise one fast
        # measurement would keep every other replica from ever being tried.
        measured = [m for r in usable if (m := self.latency(r.peer_id)) is not None]
        unmeasured = min(measured) if measured else None
        times = [self.expected_time(r, samples, unmeasured) for r in usable]
        best = min(times)
        pool = [(r, t) for r, t in zip(usable, times, strict=True) if t <= best * self.config.max_slowdown]
        weights = [1.0 / max(t, 1e-9) for _, t in pool]
        return self._rng.choices([r for r, _ in pool], weights=weights)[0]

    def banned(self, peer_id: str, now: float) -> bool:
        """Whether ``peer_id`` is being avoided after a failure."""
        stats = self._peers.get(peer_id)
        return stats is not None and stats.banned_until > now

    def banned_until(self, peer_id: str) -> float:
        """When the ban of ``peer_id`` ends (0 if it never failed)."""
        stats = self._peers.get(peer_id)
        return 0.0 if stats is None else stats.banned_until

    def succeeded(self, peer_id: str, seconds: float) -> None:
        """Fold a successful call's duration into the peer's latency EWMA."""
        stats = self._peers.setdefault(peer_id, _PeerStats())
        alpha = 2.0 / (self.config.latency_half_life + 1)
        stats.latency = seconds if stats.latency is None else stats.latency + alpha * (seconds - stats.latency)

    def failed(self, peer_id: str, now: float) -> None:
        """Avoid ``peer_id`` for ``ban_time`` seconds."""
        stats = self._peers.setdefault(peer_id, _PeerStats())
        stats.failures += 1
        stats.banned_until = now + self.config.ban_time

    def latency(self, peer_id: str) -> float | None:
        """The measured latency EWMA of ``peer_id``, if it was ever called successfully."""
        stats = self._peers.get(peer_id)
        return None if stats is None else stats.latency
