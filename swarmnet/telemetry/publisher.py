"""Publish this peer's telemetry: a signed ``TelemetryReport`` in its own slot, refreshed on a period.

Like membership announcements, every peer's report lives under one DHT key per swarm with the
peer id as subkey, and each one replaces the last. ``collect`` builds the report from the peer's
components' ``statistics()`` each time; if it fails, or the DHT refuses the store, the loop logs
it and retries after ``retry_interval`` (telemetry must never take a peer down). ``stop()``
overwrites the slot with a ``state="left"`` report so the monitor sees a clean departure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from swarmnet.errors import ConfigError, TransportClosed
from swarmnet.identity import Identity
from swarmnet.records import sign_record
from swarmnet.telemetry.record import TelemetryConfig, TelemetryReport
from swarmnet.transport.base import Transport

__all__ = ["PublisherStatistics", "TelemetryPublisher"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublisherStatistics:
    """Counters of this peer's telemetry publishing."""

    published: int  # reports the DHT accepted
    failed: int  # reports that could not be built, were too large, or were not stored
    last_published_at: float | None


class TelemetryPublisher:
    """Publishes ``collect()`` every ``config.period`` seconds from ``start()`` until ``stop()``."""

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        config: TelemetryConfig,
        collect: Callable[[], TelemetryReport],
    ) -> None:
        config.validate()
        if transport.peer_id != identity.peer_id:
            raise ConfigError(f"transport peer id {transport.peer_id} is not the identity's {identity.peer_id}")
        self.config = config
        self._transport, self._identity, self._collect = transport, identity, collect
        self._loop: asyncio.Task[None] | None = None
        self._last: TelemetryReport | None = None  # the last report built, for the farewell
        self._last_expiry = 0.0
        self._published = self._failed = self._collect_failures = 0
        self._last_published_at: float | None = None
        self._stopped = False

    async def start(self) -> None:
        """Publish once now, then every ``config.period`` in a background task."""
        if self._stopped:
            raise RuntimeError("a stopped publisher cannot be restarted")
        await self.publish()
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="swarmnet-telemetry")

    async def publish(self) -> bool:
        """Build a report and store it now; returns whether the DHT accepted it (never raises for a bad report)."""
        try:
            report = self._collect()
        except Exception:
            self._failed += 1
            self._collect_failures += 1
            # A broken statistics() would fail every period: say so once per streak, then at debug.
            level = logging.WARNING if self._collect_failures == 1 else logging.DEBUG
            logger.log(level, "could not build the telemetry report", exc_info=True)
            return False
        self._collect_failures = 0
        self._last = report
        now = self._transport.clock.time()
        return await self._store(report, now, now + self.config.ttl)

    async def stop(self, leave: bool = True) -> None:
        """Stop the loop; with ``leave``, mark this peer as gone at once. Safe to call twice."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._stopped:
            return
        self._stopped = True
        if not leave:
            return
        report: TelemetryReport | None = self._last  # the freshest figures we have, if collecting fails now
        with contextlib.suppress(Exception):
            report = self._collect()
        if report is None:
            return
        now = self._transport.clock.time()
        # The DHT keeps whichever value expires last, so the farewell must outlive the last report.
        expires_at = max(now + self.config.leave_linger, self._last_expiry + 1e-3)
        farewell = report.model_copy(update={"state": "left"})
        with contextlib.suppress(TransportClosed):
            if await self._store(farewell, now, expires_at):
                return
        logger.debug("could not publish the telemetry farewell; the last report expires on its own")

    def statistics(self) -> PublisherStatistics:
        """A snapshot of the publishing counters."""
        return PublisherStatistics(self._published, self._failed, self._last_published_at)

    async def _store(self, report: TelemetryReport, now: float, expires_at: float) -> bool:
        peer_id, key = self._identity.peer_id, self.config.key
        try:
            value = sign_record(self._identity, report, key=key, subkey=peer_id, timestamp=now, expires_at=expires_at)
        except ValueError:  # a non-finite number in an unconstrained field: JSON cannot carry it
            self._failed += 1
            logger.warning("telemetry report does not serialize", exc_info=True)
            return False
        if len(value) > self.config.records.max_bytes:
            # Readers would reject it; storing it would only hide our previous, valid report.
            self._failed += 1
            logger.error(
                "telemetry report of %d bytes exceeds the %d-byte limit", len(value), self.config.records.max_bytes
            )
            return False
        ok = await self._transport.store(key, value, expires_at, subkey=peer_id)
        if ok:
            self._published += 1
            self._last_published_at = now
            self._last_expiry = max(self._last_expiry, expires_at)
        else:
            self._failed += 1
        return ok

    async def _run(self) -> None:
        delay = self.config.period
        while True:
            await asyncio.sleep(delay)
            try:
                ok = await self.publish()
            except TransportClosed:
                logger.debug("transport closed; telemetry stops")
                return
            except Exception:
                logger.exception("telemetry publishing failed")
                self._failed += 1
                ok = False
            if not ok:
                logger.debug("telemetry report not published; retrying in %.1fs", self.config.retry_interval)
            delay = self.config.period if ok else self.config.retry_interval
