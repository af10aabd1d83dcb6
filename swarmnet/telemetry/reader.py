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
        entries = []
        for subkey, stored in (await self._transport.get(key)).items():
            record = self._verifier.verify_or_none(stored.value, TelemetryReport, key=key, subkey=subkey, now=now)
            if record is None:
                continue
            if record.peer_id != subkey:
                # Genuine, but only a slot's owner speaks for it (verify_or_none already caught forgeries).
                self._foreign["slot"] += 1
                logger.debug("telemetry by %s in slot %s ignored", record.peer_id, subkey)
                continue
            entries.append(TelemetryEntry(record.peer_id, record.payload, record.timestamp, record.expires_at))
        return sorted(entries, key=lambda entry: entry.peer_id)

    def rejections(self) -> dict[str, int]:
        """Reason -> count of the values skipped so far (``malformed``, ``forged``, ``oversized``, ``slot``, ...)."""
        return dict(self._verifier.rejections + self._foreign)
