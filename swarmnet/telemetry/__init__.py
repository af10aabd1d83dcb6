"""swarmnet.telemetry: the signed reports peers publish to the DHT, and reading them back."""

from swarmnet.telemetry.record import (
    AveragingSummary,
    FederatedRoundSummary,
    LossPoint,
    TelemetryConfig,
    TelemetryReport,
)

__all__ = ["AveragingSummary", "FederatedRoundSummary", "LossPoint", "TelemetryConfig", "TelemetryReport"]
