"""What a ``SwarmTrainer`` tells its caller: a ``Progress`` event as it trains, ``TrainerStatistics`` on demand."""

from __future__ import annotations

from dataclasses import dataclass

from swarmnet.averaging import AveragerStatistics, Outcome

__all__ = ["Progress", "TrainerStatistics"]


@dataclass(frozen=True, kw_only=True)
class Progress:
    """One report to the caller (progress bar, log line, telemetry)."""

    step: int
    rounds: int
    loss: float  # moving average of the inner-step losses
    bytes_sent: int
    bytes_received: int
    last: Outcome | None = None
    val_loss: float | None = None
    event: str = "step"  # "step", "sync", "eval", "fetched"
    raw_bytes: int = 0  # what the exchanges so far would have sent as dense fp32 (compression baseline)
    syncing: bool = False  # an exchange is in flight


@dataclass(frozen=True, kw_only=True)
class TrainerStatistics:
    """A trainer's counters (``SwarmTrainer.statistics``), for telemetry and its summary."""

    step: int
    rounds: int
    loss: float | None  # moving average of the inner-step losses; None before the first step
    bytes_sent: int  # over every fragment's averager
    bytes_received: int
    state_fetches: int  # consensus states adopted from other trainers
    state_bytes_served: int  # state sent to other trainers
    raw_bytes: int  # what the exchanges so far would have sent as dense fp32 (compression baseline)
    last: Outcome | None  # the last fragment's last exchange
    averagers: tuple[AveragerStatistics, ...]  # one per fragment, with its error-feedback statistics
