"""The volunteer peer daemon's lifecycle: start the transport, probe, announce, heartbeat, leave.

Roles that do work (DiLoCo replica, pipeline stage, expert, server) plug in here in later
versions; today a peer joins, stays listed, and leaves cleanly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.membership import MembershipConfig, PeerInfo, Swarm
from swarmnet.peers.probe import probe_resources
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
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    network: HivemindConfig = field(default_factory=HivemindConfig)

    def validate(self) -> None:
        """Raise ``ConfigError`` for values the daemon cannot run with."""
        if not self.roles or any(not role or len(role) > 32 for role in self.roles):
            raise ConfigError(f"roles must be 1-32 characters each: {self.roles}")
        if self.bandwidth_mbps is not None and self.bandwidth_mbps <= 0:
            raise ConfigError("bandwidth_mbps must be positive")
        if self.benchmark_seconds < 0:
            raise ConfigError("benchmark_seconds must be >= 0")
        self.membership.validate()
        self.network.limits.validate()


@dataclass(frozen=True)
class ReadyInfo:
    """Told to the caller once the peer is announced."""

    peer_id: str
    addresses: list[str]


async def run_daemon(
    config: DaemonConfig, stop: asyncio.Event, on_ready: Callable[[ReadyInfo], None] | None = None
) -> None:
    """Run a peer until ``stop`` is set, then withdraw from the swarm and release everything."""
    config.validate()
    identity = Identity.load_or_create(config.identity_path)
    # The transport forks hivemind's DHT process: start it before torch spins up its thread pools.
    async with await HivemindTransport.create(identity, config.network) as transport:
        report = await asyncio.to_thread(probe_resources, config.benchmark_seconds)
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
        try:
            await stop.wait()
        finally:
            logger.info("leaving swarm %r", config.membership.swarm)
            await asyncio.shield(swarm.leave())


async def _warn_if_identity_in_use(swarm: Swarm, peer_id: str) -> None:
    if any(member.peer_id == peer_id for member in await swarm.peers()):
        logger.warning(
            "peer id %s is already listed: a previous run that was killed, or another process using the "
            "same key (give each peer its own --identity)",
            peer_id,
        )
