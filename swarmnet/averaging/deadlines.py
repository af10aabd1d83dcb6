"""Deadlines that adapt: to the throughput measured in earlier rounds, and to arrivals within a phase."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable

from swarmnet.averaging.config import DeadlineConfig

__all__ = ["Arrivals", "ThroughputModel"]


class ThroughputModel:
    """An EWMA of the rate at which this peer received data phases; turns byte counts into deadlines."""

    def __init__(self, config: DeadlineConfig, announced_mbps: float | None = None) -> None:
        config.validate()
        self.config = config
        self.bytes_per_second = (announced_mbps or config.initial_mbps) * 1e6 / 8

    def transfer_time(self, nbytes: float) -> float:
        """Seconds ``nbytes`` take at the modelled rate, with nothing added."""
        return nbytes / self.bytes_per_second

    def timeout(self, nbytes: float) -> float:
        """Seconds a phase moving ``nbytes`` through this peer's link may take."""
        c = self.config
        return min(c.maximum, max(c.minimum, c.base + c.slack * nbytes / self.bytes_per_second))

    def observe(self, nbytes: float, seconds: float) -> None:
        """Fold in a measurement; tiny transfers say little about bandwidth and are ignored."""
        if nbytes < 256 * 1024 or seconds <= 0:
            return
        alpha = self.config.smoothing
        self.bytes_per_second = (1 - alpha) * self.bytes_per_second + alpha * nbytes / seconds


class Arrivals:
    """Messages expected from a set of peers in one phase; wait for them under a deadline.

    Peers known to have failed (an RPC to them broke) stop being waited for at once. Once half of
    the expected peers have arrived at time ``t`` since the phase began, the rest get at most
    ``max(grace, factor * t)`` seconds from the start: a straggler does not hold up everyone
    until the phase's full deadline.
    """

    def __init__(self, *, factor: float, grace: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.start = self._loop.time()
        self.expected: set[int] = set()
        self._times: dict[int, float] = {}  # absolute arrival times; messages may come before expect()
        self.failed: set[int] = set()
        self._factor, self._grace = factor, grace
        self._changed = asyncio.Event()

    def expect(self, expected: Iterable[int], failed: Iterable[int] = ()) -> None:
        """Begin the phase now, waiting for ``expected`` (minus peers already known to have failed)."""
        self.start = self._loop.time()
        self.expected = set(expected)
        self.failed |= self.expected & set(failed)

    @property
    def arrived(self) -> dict[int, float]:
        """Expected peers that arrived, and when (seconds since the phase began; 0 if before)."""
        return {i: max(0.0, t - self.start) for i, t in self._times.items() if i in self.expected}

    def arrive(self, index: int) -> None:
        """Record that ``index``'s message is complete."""
        if index not in self._times:
            self._times[index] = self._loop.time()
            self._changed.set()

    def fail(self, index: int) -> None:
        """Stop waiting for ``index``."""
        if index not in self._times:
            self.failed.add(index)
            self._changed.set()

    @property
    def pending(self) -> set[int]:
        """Expected peers neither arrived nor failed."""
        return self.expected - self._times.keys() - self.failed

    def _cutoff(self, deadline: float, floor: float) -> float:
        arrived = self.arrived
        if math.isinf(self._factor) or 2 * len(arrived) < len(self.expected):
            return deadline
        half = sorted(arrived.values())[max(0, (len(self.expected) + 1) // 2 - 1)]
        return min(deadline, self.start + max(self._grace, floor, self._factor * half))

    async def wait(self, timeout: float, floor: float = 0.0) -> set[int]:
        """Wait until nothing is pending or the (adaptive) deadline passes; return who arrived.

        ``floor``: seconds the expected bytes need at the modelled rate; stragglers are never cut
        before it (when links are the bottleneck, arrival times spread with the bytes, not with health).
        """
        deadline = self.start + timeout
        while self.pending:
            remaining = self._cutoff(deadline, floor) - self._loop.time()
            if remaining <= 0:
                break
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                break
        return set(self.arrived)
