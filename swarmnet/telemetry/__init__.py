"""swarmnet.telemetry: the signed reports peers publish to the DHT, and reading them back.

* **TelemetryReport, TelemetryConfig (record.py)** - the record schema, its DHT key and timing
* **TelemetryPublisher (publisher.py)** - publishes a peer's report on a period, and its departure
* **TelemetryReader (reader.py)** - every peer's newest verified report, for the monitor
* **LossHistory, Throughput, averaging_summary (collect.py)** - report pieces from components' statistics
"""

from swarmnet.telemetry.collect import LossHistory, Throughput, averaging_summary, device_info, fp32_allreduce_bytes
from swarmnet.telemetry.publisher import PublisherStatistics, TelemetryPublisher
from swarmnet.telemetry.reader import TelemetryEntry, TelemetryReader
from swarmnet.telemetry.record import (
    AveragingSummary,
    FederatedRoundSummary,
    LossPoint,
    TelemetryConfig,
    TelemetryReport,
)

__all__ = [
    "AveragingSummary",
    "FederatedRoundSummary",
    "LossHistory",
    "LossPoint",
    "PublisherStatistics",
    "TelemetryConfig",
    "TelemetryEntry",
    "TelemetryPublisher",
    "TelemetryReader",
    "TelemetryReport",
    "Throughput",
    "averaging_summary",
    "device_info",
    "fp32_allreduce_bytes",
]
