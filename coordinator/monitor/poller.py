"""``TelemetryPoller``: reads the swarm's telemetry (and membership) every ``interval`` into a ``MonitorState``.

A failed read (DHT unreachable, a transport error) is logged and retried on the next tick; the state
keeps what it had, so peers go stale and drop on schedule rather than vanishing on one bad read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from swarmnet.clock import Clock
from swarmnet.coordinator.monitor.state import MemberLike, MonitorState, TelemetryEntryLike

__all__ = ["PollerStatistics", "TelemetryPoller", "TelemetrySource"]

logger = logging.getLogger(__name__)


class TelemetrySource(Protocol):
    """What the poller reads (``swarmnet.telemetry.reader.TelemetryReader`` is one)."""

    async def read(self) -> Sequence[TelemetryEntryLike]:
        """Verified reports, one per peer."""
        ...

    def rejections(self) -> dict[str, int]:
        """Counters of refused records by reason."""
        ...


@dataclass(frozen=True)
class PollerStatistics:
    """How reading has gone so far."""

    reads: int
    failures: int
    last_read_at: float | None
    last_error: str | None


class TelemetryPoller:
    """Feeds ``state`` from ``source`` (and ``members``, when given) until stopped."""

    def __init__(
        self,
        source: TelemetrySource,
        state: MonitorState,
        clock: Clock,
        *,
        interval: float = 1.0,
        members: Callable[[], Awaitable[Sequence[MemberLike]]] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.source, self.state, self.clock, self.interval = source, state, clock, interval
        self._members = members
        self._reads = self._failures = self._failing = 0  # _failing: consecutive failures
        self._last_read_at: float | None = None
        self._last_error: str | None = None

    async def poll_once(self) -> bool:
        """One read into the state; False (and logged) when it failed."""
        try:
            if self._members is not None:
                members = await self._members()
                self.state.ingest_members(members, self.clock.time())
            entries = await self.source.read()
            now = self.clock.time()
            self.state.set_reader_rejections(self.source.rejections())
            self.state.ingest(entries, now)
        except Exception as e:  # the DHT is not ours: keep serving what we have and try again
            self._failures += 1
            self._failing += 1
            self._last_error = f"{type(e).__name__}: {e}"
            level = logging.WARNING if self._failing == 1 else logging.DEBUG  # once per outage, not per tick
            logger.log(level, "reading telemetry failed (%s); retrying every %.1fs", self._last_error, self.interval)
            self.state.ingest((), self.clock.time())  # still expire peers on schedule
            return False
        if self._failing:
            logger.info("reading telemetry works again after %d failed reads", self._failing)
        self._reads += 1
        self._failing = 0
        self._last_read_at = now
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    def statistics(self) -> PollerStatistics:
        """Counters of reads so far."""
        return PollerStatistics(self._reads, self._failures, self._last_read_at, self._last_error)
