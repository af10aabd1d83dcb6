"""Configuration of the averaging engine: one frozen dataclass per concern, each with ``validate()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from swarmnet.averaging.robust import AggregationConfig
from swarmnet.errors import ConfigError
from swarmnet.keyspace import AVERAGING_MAX_LIFETIME

__all__ = ["AveragingConfig", "DeadlineConfig", "MatchmakingConfig"]

SparseMode = Literal["auto", "reduce", "allgather"]
FeedbackMode = Literal["auto", "on", "off"]


@dataclass(frozen=True, kw_only=True)
class MatchmakingConfig:
    """How peers that want to average the same run and round find each other through the DHT."""

    target_group_size: int = 4  # a leader closes the group as soon as this many peers are ready
    min_group_size: int = 2  # fewer than this after ``min_wait``: keep waiting; after ``timeout``: give up
    min_wait: float = 0.5  # seconds a leader waits for more peers before closing a group below target
    timeout: float = 15.0  # seconds before a peer gives up on this round (late peers wait for the next)
    poll_interval: float = 0.1  # seconds between DHT lookups while waiting
    settle_time: float = 0.03  # a ready leader looks again this soon, to check its view has stopped changing
    request_timeout: float = 2.0  # seconds for a propose/commit exchange with one peer
    # Seconds the members of last round's full group give each other to meet again without the DHT: its
    # leader proposes straight to them, and they wait that long before announcing themselves (0: always the
    # DHT). A stable round then costs one propose/commit exchange instead of DHT stores and lookups.
    regroup_window: float = 0.25
    # Groups this peer seeks after a peer's result was refused (``Outcome.distrusted``) in which it leaves
    # that peer out: it neither leads it into a group nor joins a group it leads.
    distrust_rounds: int = 10

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if not 1 <= self.min_group_size <= self.target_group_size:
            raise ConfigError(
                f"need 1 <= min_group_size ({self.min_group_size}) <= target_group_size ({self.target_group_size})"
            )
        if not 0 <= self.min_wait < self.timeout:
            raise ConfigError(f"need 0 <= min_wait ({self.min_wait}) < timeout ({self.timeout})")
        # A join record lives timeout + 5 s; storage nodes refuse longer-lived ones.
        if self.timeout + 5.0 > AVERAGING_MAX_LIFETIME:
            raise ConfigError(f"timeout must be at most {AVERAGING_MAX_LIFETIME - 5.0:g} s, got {self.timeout}")
        if self.poll_interval <= 0 or self.request_timeout <= 0 or self.settle_time <= 0:
            raise ConfigError("poll_interval, settle_time and request_timeout must be positive")
        if self.regroup_window < 0:
            raise ConfigError(f"regroup_window must be >= 0, got {self.regroup_window}")
        if isinstance(self.distrust_rounds, bool) or not isinstance(self.distrust_rounds, int):
            raise ConfigError(f"distrust_rounds must be an int, got {self.distrust_rounds!r}")
        if self.distrust_rounds < 0:
            raise ConfigError(f"distrust_rounds must be >= 0, got {self.distrust_rounds}")


@dataclass(frozen=True, kw_only=True)
class DeadlineConfig:
    """Deadlines of the data phases; they adapt to the throughput observed in earlier rounds.

    A phase that must move ``b`` bytes over this peer's link waits at most
    ``clamp(base + slack * b / rate, minimum, maximum)`` seconds, where ``rate`` starts at the
    announced bandwidth and then follows an exponential moving average of measured arrival rates.
    Within a phase, once half of the expected messages have arrived after ``t`` seconds, the
    others get at most ``max(straggler_grace, straggler_factor * t)`` seconds from the phase start.
    """

    base: float = 2.0  # fixed cost of a phase: connection setup, encoding, scheduling
    slack: float = 3.0  # how many times the expected transfer time a phase may take
    minimum: float = 1.0
    maximum: float = 600.0
    initial_mbps: float = 100.0  # link estimate before anything was measured (or the announced bandwidth)
    smoothing: float = 0.5  # EWMA weight of the newest rate measurement
    straggler_factor: float = 3.0
    straggler_grace: float = 1.0
    probe_interval: float = 0.5  # seconds between liveness probes of peers we are still waiting for

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.base < 0 or self.slack <= 0 or not 0 < self.minimum <= self.maximum:
            raise ConfigError(f"invalid deadline bounds: {self}")
        if self.initial_mbps <= 0 or not 0 < self.smoothing <= 1:
            raise ConfigError("initial_mbps must be positive and smoothing in (0, 1]")
        if self.straggler_factor < 1 or self.straggler_grace < 0 or self.probe_interval <= 0:
            raise ConfigError("need straggler_factor >= 1, straggler_grace >= 0 and probe_interval > 0")


@dataclass(frozen=True, kw_only=True)
class AveragingConfig:
    """What and how a group of peers averages."""

    run: str = "default"  # peers average only with peers of the same run (and the same tensor schema)
    codec: str = "none"  # registry name of the wire codec, both directions (``swarmnet.compression``)
    # Error feedback at the sender and at the reducer. "auto": on for every lossy codec except the
    # 16-bit casts (their error is ~2**-11 relative and not worth a residual of the model's size).
    error_feedback: FeedbackMode = "auto"
    # Sparse (top-k) codecs: "reduce" = reduce-scatter then all-gather, the reducer re-sparsifies
    # (with its own error feedback); "allgather" = every peer sends its sparse vector to all others
    # (exact sum of the sparse vectors, one phase); "auto" picks the one that sends fewer bytes.
    sparse_mode: SparseMode = "auto"
    # A message carries about ``chunk_bytes`` of payload (at most ``chunk_elements`` values): reducers
    # pipeline chunk by chunk, so large payloads stream in small pieces while small payloads (1-bit,
    # top-k) go in few messages, each of which costs a header, an acknowledgement and a kernel launch.
    chunk_bytes: int = 1 << 19  # 512 KiB, the part size hivemind defaults to
    chunk_elements: int = 1 << 24  # bounds memory per message (64 MB of float32)
    bandwidth_mbps: float = 100.0  # announced to the group: parts are sized in proportion to it
    # Cap on this peer's sending rate in the data phase, in Mbit/s (None: no cap). Set it a little below
    # the uplink's real rate (say 95%) to keep the link's queue short: a full queue also delays the
    # acknowledgements of what this peer receives, and with them its downloads (docs/performance.md, averaging).
    pace_mbps: float | None = None
    # The largest weight a contribution may carry, in the caller's unit (samples, steps): the bound the
    # protocol can justify, e.g. a DiLoCo trainer's inner steps per round. A weight is its sender's own
    # claim; every peer refuses (and names in ``Outcome.rejected``) a contribution weighing more, and
    # ``step`` clips a larger weight of our own to it (logged). The default weighs every peer alike.
    max_weight: float = 1.0
    # Robust rules only: a reducer's result whose distance from our own values, relative to their norm, is
    # more than this many times the lower median of that ratio over the round's ranges is refused, its
    # reducer named in ``Outcome.distrusted`` (``plausible.py``). Lower catches smaller lies and risks
    # refusing an honest range that differs more than the rest: on DiLoCo updates of 5 replicas honest
    # ranges stayed within 1.15x (5 ranges) to 1.8x (16) of that median (scripts/bench/averaging_plausibility.py).
    result_tolerance: float = 4.0
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    matchmaking: MatchmakingConfig = field(default_factory=MatchmakingConfig)
    deadlines: DeadlineConfig = field(default_factory=DeadlineConfig)

    def chunk_size(self, payload_ratio: float) -> int:
        """Elements per message for a codec whose payload is ``payload_ratio`` of float32."""
        return max(1024, min(self.chunk_elements, int(self.chunk_bytes / (4 * max(payload_ratio, 1e-9)))))

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting or an unknown codec."""
        from swarmnet.compression import codec_names

        if not self.run or "/" in self.run or len(self.run) > 128:
            raise ConfigError(f"run must be 1-128 characters without '/': {self.run!r}")
        if self.codec not in codec_names():
            raise ConfigError(f"unknown codec {self.codec!r}; known: {', '.join(codec_names())}")
        if self.chunk_elements < 1024 or self.chunk_bytes < 1024:
            raise ConfigError(f"chunk_elements and chunk_bytes must be >= 1024, got {self}")
        if not self.bandwidth_mbps > 0:
            raise ConfigError(f"bandwidth_mbps must be positive, got {self.bandwidth_mbps}")
        if self.pace_mbps is not None and not self.pace_mbps > 0:
            raise ConfigError(f"pace_mbps must be positive or None, got {self.pace_mbps}")
        if isinstance(self.max_weight, bool) or not (
            isinstance(self.max_weight, int | float) and math.isfinite(self.max_weight) and self.max_weight > 0
        ):
            raise ConfigError(f"max_weight must be a finite positive number, got {self.max_weight!r}")
        if not (isinstance(self.result_tolerance, int | float) and 1 < self.result_tolerance < math.inf):
            raise ConfigError(f"result_tolerance must be finite and > 1, got {self.result_tolerance!r}")
        self.aggregation.validate()
        self.matchmaking.validate()
        self.deadlines.validate()
