"""The volunteer peer daemon's lifecycle: start the transport, probe, announce, heartbeat, leave.

Every peer also publishes telemetry (``swarmnet.telemetry``) for the monitor while it runs.
Roles that do work plug in here: with a ``trainer`` config the peer trains (``trainer_role.py``)
until it is stopped or reaches its step budget, then leaves. A peer with no working role joins,
stays listed, and leaves.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmnet.errors import ConfigError, RemoteFault, TransportError
from swarmnet.hardware import probe_resources
from swarmnet.identity import Identity
from swarmnet.membership import DeviceInfo, MembershipConfig, PeerInfo, Swarm
from swarmnet.peers.link_probe import LinkProbeConfig, measure_upload_mbps, serve_link_probe
from swarmnet.peers.telemetry import PeerTelemetry
from swarmnet.peers.trainer_role import TrainerRoleConfig, TrainerSummary, run_trainer
from swarmnet.telemetry import TelemetryConfig, TelemetryPublisher
from swarmnet.transport.base import Transport
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

__all__ = ["DEFAULT_IDENTITY_PATH", "DaemonConfig", "ReadyInfo", "run_daemon"]

logger = logging.getLogger(__name__)

DEFAULT_IDENTITY_PATH = Path("~/.swarmnet/identity.pem")


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    """Everything a peer daemon needs to run."""

    identity_path: Path = DEFAULT_IDENTITY_PATH  # Ed25519 key; created with mode 0600 on first start
    roles: tuple[str, ...] = ("volunteer",)  # what this peer offers to do
    bandwidth_mbps: float | None = None  # configured link speed; None means unknown (not yet measured)
    benchmark_seconds: float = 0.3  # length of the start-up compute benchmark; 0 skips it
    link_probe: LinkProbeConfig = field(default_factory=LinkProbeConfig)  # bandwidth measurement sizes
    link_remeasure_interval: float = 1800.0  # seconds between bandwidth measurements once one succeeded
    link_retry_interval: float = 30.0  # seconds between attempts while no other peer could be measured against
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    network: HivemindConfig = field(default_factory=HivemindConfig)
    trainer: TrainerRoleConfig | None = None  # set: this peer trains (role "trainer")
    telemetry: TelemetryConfig | None = field(default_factory=TelemetryConfig)  # None: publish no telemetry

    def validate(self) -> None:
        """Raise ``ConfigError`` for values the daemon cannot run with."""
        if not self.roles or any(not role or len(role) > 32 for role in self.roles):
            raise ConfigError(f"roles must be 1-32 characters each: {self.roles}")
        if self.bandwidth_mbps is not None and self.bandwidth_mbps <= 0:
            raise ConfigError("bandwidth_mbps must be positive")
        if self.benchmark_seconds < 0:
            raise ConfigError("benchmark_seconds must be >= 0")
        if self.link_remeasure_interval <= 0 or self.link_retry_interval <= 0:
            raise ConfigError("link measurement intervals must be positive")
        self.link_probe.validate()
        self.membership.validate()
        self.network.validate()
        if self.trainer is not None:
            self.trainer.validate()
        if self.telemetry is not None:
            self.telemetry.validate()


@dataclass(frozen=True)
class ReadyInfo:
    """Told to the caller once the peer is announced."""

    peer_id: str
    addresses: list[str]


async def run_daemon(
    config: DaemonConfig, stop: asyncio.Event, on_ready: Callable[[ReadyInfo], None] | None = None
) -> TrainerSummary | None:
    """Run a peer until ``stop`` is set (or its trainer is done), then withdraw and release everything."""
    config.validate()
    identity = Identity.load_or_create(config.identity_path)
    # The transport forks hivemind's DHT process: start it before torch spins up its thread pools.
    async with await HivemindTransport.create(identity, config.network) as transport:
        report = await asyncio.to_thread(probe_resources, config.benchmark_seconds)
        await serve_link_probe(transport, config.link_probe)
        swarm = Swarm(transport, identity, config.membership)
        addresses = await transport.visible_addresses()
        await _warn_if_identity_in_use(swarm, identity.peer_id)
        info = PeerInfo(
            roles=config.roles,
            device=report.device,
            compute_gflops=report.compute_gflops,
            bandwidth_mbps=config.bandwidth_mbps,
            bandwidth_source="configured" if config.bandwidth_mbps else "unknown",
            addresses=tuple(addresses),
            started_at=transport.clock.time(),
        )
        if not await swarm.join(info):
            logger.warning("first announcement was not stored; heartbeats will retry")
        logger.info("peer %s joined swarm %r as %s", identity.peer_id, config.membership.swarm, ",".join(config.roles))
        if on_ready is not None:
            on_ready(ReadyInfo(identity.peer_id, addresses))
        telemetry = _telemetry(config, report.device, transport, info.started_at)
        publisher = None
        if config.telemetry is not None:
            publisher = TelemetryPublisher(transport, identity, config.telemetry, telemetry.report)
            await publisher.start()
        measuring = None
        if config.bandwidth_mbps is None:
            measuring = asyncio.create_task(
                _keep_link_measured(swarm, transport, config, telemetry), name="swarmnet-link"
            )
        farewell: asyncio.Future[None] | None = None

        def leave() -> asyncio.Future[None]:
            nonlocal farewell
            if farewell is None:
                farewell = asyncio.ensure_future(_leave(swarm, publisher, transport, config.membership.swarm))
            return farewell

        try:
            if config.trainer is None:
                await stop.wait()
                return None
            return await _train(run_trainer(transport, identity, config.trainer, stop, telemetry), stop, leave)
        finally:
            if measuring is not None:
                measuring.cancel()
                await asyncio.gather(measuring, return_exceptions=True)
            await asyncio.shield(leave())


async def _train(
    training: Coroutine[Any, Any, TrainerSummary], stop: asyncio.Event, leave: Callable[[], Awaitable[None]]
) -> TrainerSummary:
    """Run the trainer; once ``stop`` is set, leave the swarm at once while it finishes its step and summary."""
    trainer = asyncio.ensure_future(training)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({trainer, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() and not trainer.done():
            await asyncio.shield(leave())
        return await trainer
    finally:
        stopping.cancel()
        trainer.cancel()  # no effect once it is done; ends it if we were cancelled


async def _leave(swarm: Swarm, publisher: TelemetryPublisher | None, transport: HivemindTransport, name: str) -> None:
    """Withdraw the membership record and the telemetry report together (each is one DHT store)."""
    if not transport.daemon_running():
        # The stop signal reached our p2p daemon too: nothing can be sent, and the transport says so once.
        if publisher is not None:
            await publisher.stop(leave=False)
        await swarm.leave(publish=False)
        return
    logger.info("leaving swarm %r", name)
    await asyncio.gather(swarm.leave(), *([] if publisher is None else [publisher.stop()]))


def _telemetry(config: DaemonConfig, device: DeviceInfo, transport: Transport, started_at: float) -> PeerTelemetry:
    trainer = config.trainer
    role = "trainer" if trainer is not None else ",".join(config.roles)
    telemetry = PeerTelemetry(
        role=role, run=trainer.run if trainer is not None else "", device=device, clock=transport.clock,
        started_at=started_at,
    )  # fmt: skip
    telemetry.link_mbps = config.bandwidth_mbps
    return telemetry


async def _keep_link_measured(
    swarm: Swarm, transport: Transport, config: DaemonConfig, telemetry: PeerTelemetry
) -> None:
    """Measure upload bandwidth against a random live peer; again every so often."""
    while True:
        others = await swarm.peers(include_self=False)
        delay = config.link_retry_interval
        if others:
            target = random.choice(others).peer_id
            try:
                mbps = await measure_upload_mbps(transport, target, config.link_probe)
            except (TransportError, RemoteFault) as e:
                logger.debug("link probe to %s failed: %r", target, e)
            else:
                logger.info("measured upload bandwidth: %.1f Mbit/s (to %s)", mbps, target)
                await swarm.update(bandwidth_mbps=round(mbps, 1), bandwidth_source="measured")
                telemetry.link_mbps = round(mbps, 1)
                delay = config.link_remeasure_interval
        await asyncio.sleep(delay)


async def _warn_if_identity_in_use(swarm: Swarm, peer_id: str) -> None:
    if any(member.peer_id == peer_id for member in await swarm.peers()):
        logger.warning(
            "peer id %s is already listed: a previous run that was killed, or another process using the "
            "same key (give each peer its own --identity)",
            peer_id,
        )
