"""The telemetry record every peer publishes: what it does now, as a signed, size-limited DHT value.

The longest lists a report may carry keep a full one under the 16 KiB record limit (a test builds
the largest possible report). Records live under one DHT key per swarm (``TelemetryConfig.key``),
one subkey per peer (its peer id), like membership announcements; each one is built from the peer's
components' ``statistics()`` and replaces the previous one. Lists are short by construction
(``max_length``), so a record stays far below the record size limit however long a peer runs; the
monitor builds longer curves itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from swarmnet.errors import ConfigError
from swarmnet.keyspace import TELEMETRY_MAX_LIFETIME
from swarmnet.membership import DeviceInfo
from swarmnet.records import Payload, RecordPolicy
from swarmnet.version import PROTOCOL_VERSION, __version__

__all__ = ["AveragingSummary", "FederatedRoundSummary", "LossPoint", "TelemetryConfig", "TelemetryReport"]

_NAME = 128


class LossPoint(Payload):
    """One point of a loss curve."""

    step: int = Field(ge=0)
    loss: float = Field(allow_inf_nan=False)


class AveragingSummary(Payload):
    """One averaging round as this peer saw it (from ``averaging.Outcome``)."""

    round: int = Field(default=0, ge=0)
    group_size: int = Field(default=0, ge=0)
    contributors: int = Field(default=0, ge=0)
    failed: tuple[str, ...] = Field(default=(), max_length=16)  # peer ids dropped from the round (first 16)
    bytes_sent: int = Field(default=0, ge=0)
    bytes_received: int = Field(default=0, ge=0)
    seconds: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    codec: str = Field(default="none", max_length=64)
    at: float = 0.0  # wall-clock time the round ended


class FederatedRoundSummary(Payload):
    """One federated round as the coordinator recorded it."""

    round: int = Field(ge=0)
    outcome: str = Field(max_length=16)  # "completed" or "failed"
    reason: str = Field(default="", max_length=256)
    selected: int = Field(default=0, ge=0)
    contributors: int = Field(default=0, ge=0)
    uplink_bytes: int = Field(default=0, ge=0)
    seconds: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    train_loss: float | None = Field(default=None, allow_inf_nan=False)
    secure_aggregation: bool = False
    epsilon: float | None = Field(default=0.0, ge=0, allow_inf_nan=False)  # DP spent so far; None: unbounded


class TelemetryReport(Payload):
    """A peer's periodic report."""

    KIND = "telemetry"

    role: str = Field(default="peer", max_length=32)  # "trainer", "peer", "coordinator", "monitor", ...
    run: str = Field(default="", max_length=_NAME)
    state: str = Field(default="online", max_length=32)  # "starting", "training", "syncing", "idle", "left"
    step: int = Field(default=0, ge=0)
    round: int = Field(default=0, ge=0)
    samples_per_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    loss: float | None = Field(default=None, allow_inf_nan=False)
    losses: tuple[LossPoint, ...] = Field(default=(), max_length=48)  # recent points, oldest first
    averaging: tuple[AveragingSummary, ...] = Field(default=(), max_length=4)  # recent rounds, oldest first
    federated: tuple[FederatedRoundSummary, ...] = Field(default=(), max_length=10)  # coordinators only
    bytes_sent: int = Field(default=0, ge=0)  # totals since start, all components
    bytes_received: int = Field(default=0, ge=0)
    raw_bytes: int = Field(default=0, ge=0)  # what the sent payloads would have been uncompressed (fp32)
    link_mbps: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    device: DeviceInfo = DeviceInfo()
    uptime_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    software_version: str = Field(default=__version__, max_length=64)


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig:
    """Where and how often telemetry is published."""

    swarm: str = "main"
    period: float = 5.0  # seconds between reports
    ttl: float = 30.0  # a report stays valid this long (at most TELEMETRY_MAX_LIFETIME): a dead peer's expires then
    retry_interval: float = 1.0  # seconds before retrying a report that could not be built or stored
    leave_linger: float = 10.0  # seconds a "left" report stays at least, so the monitor sees the departure
    records: RecordPolicy = field(default_factory=RecordPolicy)

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if not 0 < len(self.swarm) <= 128 or "/" in self.swarm:
            raise ConfigError(f"swarm name must be 1-128 characters without '/': {self.swarm!r}")
        if not 0 < self.ttl <= TELEMETRY_MAX_LIFETIME or not self.leave_linger <= TELEMETRY_MAX_LIFETIME:
            raise ConfigError(f"telemetry ttl and leave_linger must be at most {TELEMETRY_MAX_LIFETIME:g} seconds")
        if not 0 < self.period <= self.ttl / 2:
            raise ConfigError(f"telemetry period ({self.period}) must be in (0, ttl/2]")
        if self.retry_interval <= 0 or self.leave_linger <= 0:
            raise ConfigError("telemetry retry_interval and leave_linger must be positive")
        self.records.validate()

    @property
    def key(self) -> str:
        """The DHT key holding the swarm's telemetry."""
        return f"swarmnet/v{PROTOCOL_VERSION}/{self.swarm}/telemetry"
