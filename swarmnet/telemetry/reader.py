"""Read a swarm's telemetry back: every peer's newest verified report, for the monitor and tools.

A DHT returns whatever was stored, so each value is verified (``RecordVerifier``) and must sit in
its author's own slot; anything else is skipped, logged at debug level and counted by reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from swarmnet.records import RecordVerifier
from swarmnet.telemetry.record import TelemetryConfig, TelemetryReport
from swarmnet.transport.base import Transport

__all__ = ["TelemetryEntry", "TelemetryReader"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TelemetryEntry:
    """One peer's current report."""

    peer_id: str
    report: TelemetryReport
    timestamp: float  # when the peer signed it (record timestamp)
    expires_at: float


class TelemetryReader:
    """Lists the verified reports under ``config.key``; keep one reader per observer (it remembers replays)."""

    def __init__(self, transport: Transport, config: TelemetryConfig) -> None:
        config.validate()
        self.config = config
        self._transport = transport
        self._verifier = RecordVerifier(config.records)
        self._foreign = Counter[str]()  # validly signed records in another peer's slot

    async def read(self) -> list[TelemetryEntry]:
        """Verified reports, one per peer, sorted by peer id; departed peers' ``state="left"`` ones included."""
        key = self.config.key
        now = self._transport.clock.time()
        stored = {subkey: value.value for subkey, value in (await self._transport.get(key)).items()}
        records, foreign = self._verifier.owned(stored, TelemetryReport, key=key, now=now)
        self._foreign["slot"] += foreign
        entries = [TelemetryEntry(r.peer_id, r.payload, r.timestamp, r.expires_at) for r in records]
        return sorted(entries, key=lambda entry: entry.peer_id)

    def rejections(self) -> dict[str, int]:
        """Reason -> count of the values skipped so far (``malformed``, ``forged``, ``oversized``, ``slot``, ...)."""
        return dict(self._verifier.rejections + self._foreign)
