"""What one averaging round did, and the running totals an averager reports through ``statistics()``."""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmnet.compression.error_feedback import ErrorFeedbackStatistics

__all__ = ["AveragerStatistics", "Outcome"]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """The result of one ``Averager.step``: who took part, what moved, how long each phase took.

    ``succeeded`` means the tensors now hold an average over at least two contributors (or the
    group had a single member). ``contributors`` is the set every member agreed on: the result is
    the (weighted, robustly aggregated) average of exactly their tensors. Peers dropped during
    the round appear in ``rejected`` (their payload was invalid) or ``failed`` (unreachable, too slow).
    A reducer whose result was refused (malformed, not finite, or implausible under a robust rule) is in
    ``distrusted``: its range keeps this peer's own values (counted in ``unaveraged_elements``), and the
    averager leaves it out of its groups for ``MatchmakingConfig.distrust_rounds`` rounds.
    """

    run: str
    round_id: int
    succeeded: bool
    reason: str = ""  # why not, when not succeeded
    group_id: str | None = None
    members: tuple[str, ...] = ()
    contributors: tuple[str, ...] = ()
    rejected: dict[str, str] = field(default_factory=dict)  # peer -> why its contribution was refused
    failed: dict[str, str] = field(default_factory=dict)  # peer -> what went wrong talking to it
    distrusted: dict[str, str] = field(default_factory=dict)  # reducer -> why its result was refused
    bytes_sent: dict[str, int] = field(default_factory=dict)  # per peer, payloads and headers
    bytes_received: dict[str, int] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # matchmaking, reduce_scatter, ...
    codec: str = "none"
    mode: str = "reduce"  # "reduce" (reduce-scatter + all-gather) or "allgather" (sparse all-gather)
    aggregation: str = "mean"
    recovered_elements: int = 0  # elements of failed reducers' parts re-reduced by the survivors
    amended_elements: int = 0  # elements whose streamed result was over other contributors, re-reduced by its reducer
    unaveraged_elements: int = 0  # elements left at the local value: no result arrived, or it was refused
    consistent: bool = True  # False if a failure during recovery let members' contributor sets differ

    @property
    def seconds(self) -> float:
        """Wall time of the whole round."""
        return sum(self.phase_seconds.values())

    @property
    def data_seconds(self) -> float:
        """Wall time after the group was formed."""
        return self.seconds - self.phase_seconds.get("matchmaking", 0.0)

    @property
    def total_bytes_sent(self) -> int:
        """Bytes this peer sent in the round."""
        return sum(self.bytes_sent.values())


@dataclass(frozen=True, kw_only=True)
class AveragerStatistics:
    """Running totals of an averager, for telemetry."""

    rounds: int
    succeeded: int
    failed: int
    bytes_sent: int
    bytes_received: int
    rejected_contributions: int
    estimated_mbps: float  # the throughput model's current estimate of this peer's link
    last: Outcome | None
    # The residuals' key count, size and norms after the last step (None when no residuals are kept, or not asked).
    error_feedback: ErrorFeedbackStatistics | None = None
