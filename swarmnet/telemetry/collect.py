"""Builders that turn components' statistics into report pieces: small, pure, and bounded.

``averaging_summary`` condenses an averaging ``Outcome``; ``fp32_allreduce_bytes`` is what an
exchange would have sent uncompressed (the baseline of the compression ratio the monitor shows);
``LossHistory`` keeps a whole run's loss curve in at most 48 points; ``Throughput`` turns step
counts into samples per second; ``device_info`` describes this machine as membership does.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from swarmnet.membership import DeviceInfo
from swarmnet.telemetry.record import AveragingSummary, LossPoint, TelemetryReport

if TYPE_CHECKING:  # the averaging package imports torch; readers of telemetry (the monitor) need not
    from swarmnet.averaging.outcome import Outcome

__all__ = ["LossHistory", "Throughput", "averaging_summary", "device_info", "fp32_allreduce_bytes"]

MAX_LOSS_POINTS: int = TelemetryReport.model_fields["losses"].metadata[0].max_length
_MAX_FAILED: int = AveragingSummary.model_fields["failed"].metadata[0].max_length


def averaging_summary(outcome: Outcome, at: float = 0.0) -> AveragingSummary:
    """One averaging round as a report entry; ``at`` is the wall-clock time it ended."""
    dropped = sorted({*outcome.failed, *outcome.rejected})
    seconds = outcome.seconds
    return AveragingSummary(
        round=max(0, outcome.round_id),
        group_size=len(outcome.members),
        contributors=len(outcome.contributors),
        failed=tuple(peer[:64] for peer in dropped[:_MAX_FAILED]),  # peer ids are ~52 characters
        bytes_sent=outcome.total_bytes_sent,
        bytes_received=sum(outcome.bytes_received.values()),
        seconds=seconds if math.isfinite(seconds) and seconds >= 0 else 0.0,
        codec=outcome.codec[:64],
        at=at,
    )


def fp32_allreduce_bytes(group_size: int, elements: int) -> int:
    """Bytes one member sends in a dense fp32 reduce-scatter + all-gather of ``elements`` values."""
    if group_size < 2:
        return 0
    return int(2 * (group_size - 1) / group_size * 4 * elements)


class LossHistory:
    """A loss curve over the whole run in at most ``max_points`` points, always ending at the newest.

    Points are kept every ``stride`` steps; when the buffer fills, every other one is dropped and
    the stride doubles, so the kept points stay evenly spread however long the run.
    """

    def __init__(self, max_points: int = MAX_LOSS_POINTS) -> None:
        if not 2 <= max_points <= MAX_LOSS_POINTS:
            raise ValueError(f"max_points must be in [2, {MAX_LOSS_POINTS}]")
        self._capacity = max_points - 1  # one place stays for the newest point
        self._kept: list[LossPoint] = []
        self._newest: LossPoint | None = None
        self._stride = 1

    def add(self, step: int, loss: float) -> None:
        """Record the loss at ``step`` (non-finite losses and negative steps are ignored)."""
        if not math.isfinite(loss) or step < 0:
            return
        self._newest = LossPoint(step=step, loss=loss)
        if self._kept and step < self._kept[-1].step + self._stride:
            return
        self._kept.append(self._newest)
        if len(self._kept) > self._capacity:
            self._kept = self._kept[::2]
            self._stride *= 2

    def points(self) -> tuple[LossPoint, ...]:
        """The kept points, oldest first, then the newest one if it was not kept."""
        if self._newest is None or (self._kept and self._kept[-1] is self._newest):
            return tuple(self._kept)
        return (*self._kept, self._newest)


class Throughput:
    """Samples per second over the last ``window`` seconds of ``(time, samples done)`` observations."""

    def __init__(self, window: float = 60.0) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self._window = window
        self._seen: deque[tuple[float, int]] = deque()

    def add(self, now: float, samples: int) -> None:
        """Observe the running total of samples processed at ``now``."""
        self._seen.append((now, samples))
        while len(self._seen) > 2 and now - self._seen[1][0] >= self._window:
            self._seen.popleft()

    def rate(self) -> float | None:
        """Samples per second, or ``None`` before two observations far enough apart."""
        if len(self._seen) < 2:
            return None
        (t0, s0), (t1, s1) = self._seen[0], self._seen[-1]
        if t1 - t0 <= 0 or s1 < s0:
            return None
        return (s1 - s0) / (t1 - t0)


def device_info() -> DeviceInfo:
    """This machine's processor, memory and accelerator, as membership announces them (no benchmark)."""
    from swarmnet.hardware import probe_resources  # imports torch: only when asked

    return probe_resources(benchmark_seconds=0).device
