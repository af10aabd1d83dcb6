"""The coordinator's round status as telemetry, for the swarm monitor.

With ``--initial-peers``, ``swarmnet coordinator`` joins the swarm's DHT as a client-mode peer and
publishes a ``TelemetryReport`` with ``role="coordinator"``: its phase, the current round, and its
last rounds as ``FederatedRoundSummary``s. The gRPC service does not depend on it: if the DHT
cannot be reached, the coordinator serves rounds anyway and says so in its log.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from swarmnet.coordinator.history import RoundRecord
from swarmnet.errors import IdentityError, StartupError
from swarmnet.identity import Identity
from swarmnet.membership import DeviceInfo
from swarmnet.telemetry import (
    FederatedRoundSummary,
    LossPoint,
    TelemetryConfig,
    TelemetryPublisher,
    TelemetryReport,
    device_info,
)
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

if TYPE_CHECKING:  # the engine imports grpc and torch, which must not start before the DHT process forks
    from swarmnet.coordinator.rounds import RoundEngine

__all__ = ["RoundStatusPublisher", "coordinator_report", "federated_summary"]

logger = logging.getLogger(__name__)

_KEPT_ROUNDS: int = TelemetryReport.model_fields["federated"].metadata[0].max_length
_KEPT_LOSSES: int = TelemetryReport.model_fields["losses"].metadata[0].max_length
IDENTITY_FILE = "telemetry_identity.pem"  # in the state directory: the coordinator keeps its peer id on restart


def federated_summary(record: RoundRecord) -> FederatedRoundSummary:
    """One finished round as a report entry (NaN loss and unbounded epsilon become ``None``)."""
    return FederatedRoundSummary(
        round=record.round,
        outcome=record.outcome,
        reason=record.reason[:256],
        selected=len(record.selected),
        contributors=len(record.contributors),
        uplink_bytes=record.uplink_bytes,
        seconds=record.seconds if math.isfinite(record.seconds) and record.seconds >= 0 else 0.0,
        train_loss=record.train_loss if math.isfinite(record.train_loss) else None,
        secure_aggregation=record.secure_aggregation,
        epsilon=record.epsilon if math.isfinite(record.epsilon) and record.epsilon >= 0 else None,
    )


def coordinator_report(engine: RoundEngine, *, device: DeviceInfo, uptime_s: float) -> TelemetryReport:
    """The coordinator's report now: phase, round, recent rounds and the training-loss curve."""
    history = engine.state.history
    current = engine.round.number if engine.round is not None else max(0, engine.state.next_round - 1)
    losses = [LossPoint(step=r.round, loss=r.train_loss) for r in history if math.isfinite(r.train_loss)]
    return TelemetryReport(
        role="coordinator",
        run=engine.config.run,
        state="done" if engine.done() else engine.phase,
        round=current,
        loss=losses[-1].loss if losses else None,
        losses=tuple(losses[-_KEPT_LOSSES:]),
        federated=tuple(federated_summary(r) for r in history[-_KEPT_ROUNDS:]),
        bytes_received=sum(r.uplink_bytes for r in history),
        device=device,
        uptime_s=max(0.0, uptime_s),
    )


class RoundStatusPublisher:
    """A client-mode DHT peer that publishes the coordinator's round status; ``open``, ``start``, ``close``."""

    def __init__(self, transport: HivemindTransport, identity: Identity, config: TelemetryConfig) -> None:
        self._transport, self._identity, self._config = transport, identity, config
        self._publisher: TelemetryPublisher | None = None

    @classmethod
    async def open(
        cls, state_dir: Path, network: HivemindConfig, config: TelemetryConfig
    ) -> RoundStatusPublisher | None:
        """Join the DHT (before gRPC and torch start threads: the transport forks); ``None`` if unreachable."""
        try:
            identity = await asyncio.to_thread(_load_identity, state_dir)
            transport = await HivemindTransport.create(identity, network)
        except (IdentityError, OSError, StartupError) as error:
            logger.warning("could not join the swarm's DHT; serving rounds without telemetry: %s", error)
            return None
        return cls(transport, identity, config)

    async def start(self, engine: RoundEngine) -> None:
        """Publish ``engine``'s status now and every period."""
        device = device_info()
        started_at = self._transport.clock.time()

        def collect() -> TelemetryReport:
            return coordinator_report(engine, device=device, uptime_s=self._transport.clock.time() - started_at)

        self._publisher = TelemetryPublisher(self._transport, self._identity, self._config, collect)
        await self._publisher.start()
        logger.info("publishing round status to swarm %r as %s", self._config.swarm, self._identity.peer_id)

    async def close(self) -> None:
        """Publish the departure and leave the DHT. Safe to call twice."""
        if self._publisher is not None:
            await self._publisher.stop()
            self._publisher = None
        await self._transport.shutdown()


def _load_identity(state_dir: Path) -> Identity:
    state_dir.mkdir(parents=True, exist_ok=True)
    return Identity.load_or_create(state_dir / IDENTITY_FILE)
