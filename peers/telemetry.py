"""What a running peer reports as telemetry: facts fixed at start, its link, and its trainer's progress.

The daemon owns one ``PeerTelemetry``; the trainer role feeds it every ``Progress`` event
(``observe``), the link measurement sets ``link_mbps``, and the ``TelemetryPublisher`` calls
``report()`` each period. Everything here is cheap: ``observe`` runs once per inner step.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from swarmnet.clock import Clock
from swarmnet.diloco import Progress
from swarmnet.membership import DeviceInfo
from swarmnet.telemetry.collect import LossHistory, Throughput, averaging_summary
from swarmnet.telemetry.record import AveragingSummary, TelemetryReport

__all__ = ["PeerTelemetry"]

logger = logging.getLogger(__name__)

_AVERAGING_KEPT: int = TelemetryReport.model_fields["averaging"].metadata[0].max_length
_NO_PROGRESS = Progress(step=0, rounds=0, loss=math.nan, bytes_sent=0, bytes_received=0)


class PeerTelemetry:
    """Accumulates a peer's figures between reports and builds its ``TelemetryReport``."""

    def __init__(self, *, role: str, run: str, device: DeviceInfo, clock: Clock, started_at: float) -> None:
        self.role, self.run, self.device = role[:32], run, device
        self.state = "starting" if role == "trainer" else "online"
        self.link_mbps: float | None = None  # the link estimate membership announces (configured or measured)
        self.samples_per_step = 0  # sequences per inner step (the batch size), set by the trainer role
        self._clock, self._started_at = clock, started_at
        self._losses = LossHistory()
        self._averaging: deque[AveragingSummary] = deque(maxlen=_AVERAGING_KEPT)
        self._throughput = Throughput()
        self._samples = 0
        self._last: Progress | None = None

    def observe(self, progress: Progress) -> None:
        """Take one trainer event into account; never raises (telemetry must not stop training)."""
        try:
            self._observe(progress)
        except Exception:
            logger.debug("telemetry could not take a trainer event into account", exc_info=True)

    def _observe(self, progress: Progress) -> None:
        now = self._clock.time()
        self._last = progress
        self.state = "syncing" if progress.syncing else "training"
        if progress.event == "step":
            self._samples += self.samples_per_step
            self._throughput.add(now, self._samples)
            self._losses.add(progress.step, progress.loss)
        elif progress.event == "sync" and progress.last is not None:
            self._averaging.append(averaging_summary(progress.last, at=now))

    def report(self) -> TelemetryReport:
        """The report to publish now."""
        progress = self._last or _NO_PROGRESS
        link = self.link_mbps if self.link_mbps is not None and math.isfinite(self.link_mbps) else None
        return TelemetryReport(
            role=self.role, run=self.run, state=self.state, step=progress.step, round=progress.rounds,
            samples_per_s=self._throughput.rate() if self.samples_per_step else None,
            loss=progress.loss if math.isfinite(progress.loss) else None, losses=self._losses.points(),
            averaging=tuple(self._averaging), bytes_sent=progress.bytes_sent, bytes_received=progress.bytes_received,
            raw_bytes=progress.raw_bytes, link_mbps=link, device=self.device,
            uptime_s=max(0.0, self._clock.time() - self._started_at),
        )  # fmt: skip
