"""Swarm membership: each peer announces a signed ``PeerInfo`` and refreshes it by heartbeat.

All announcements of one swarm live under one DHT key, one subkey per peer (its peer id), so a
single lookup lists the swarm. A peer that dies stops refreshing and its record expires after
``ttl``; a peer that leaves cleanly overwrites its slot with a ``state="left"`` record at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from swarmnet.errors import ConfigError, TransportClosed
from swarmnet.identity import Identity
from swarmnet.records import Payload, RecordPolicy, RecordVerifier, sign_record
from swarmnet.transport.base import Transport
from swarmnet.version import PROTOCOL_VERSION, __version__

__all__ = ["DeviceInfo", "Member", "MembershipConfig", "MembershipStatistics", "PeerInfo", "Swarm"]

logger = logging.getLogger(__name__)


class DeviceInfo(Payload):
    """What a peer computes on."""

    kind: Literal["cpu", "cuda", "mps", "other"] = "cpu"
    name: str = Field(default="unknown", max_length=256)  # CPU or GPU model
    memory_bytes: int = Field(default=0, ge=0)  # GPU memory for accelerators, RAM for CPUs
    cpu_count: int = Field(default=1, ge=0)
    host_memory_bytes: int = Field(default=0, ge=0)


class PeerInfo(Payload):
    """A peer's announcement: who it is, what it can do, how to reach it."""

    KIND = "peer_info"

    software_version: str = Field(default=__version__, max_length=64)
    protocol_version: int = PROTOCOL_VERSION
    roles: tuple[str, ...] = Field(default=(), max_length=16)
    device: DeviceInfo = DeviceInfo()
    compute_gflops: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # measured fp32 matmul rate
    bandwidth_mbps: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # link, Mbit/s
    bandwidth_source: Literal["measured", "configured", "unknown"] = "unknown"
    addresses: tuple[str, ...] = Field(default=(), max_length=32)  # multiaddrs others can dial
    session: str = Field(default="", max_length=64)  # random per process start: tells restarts apart
    started_at: float = 0.0
    state: Literal["online", "left"] = "online"


@dataclass(frozen=True, kw_only=True)
class MembershipConfig:
    """How a peer announces itself."""

    swarm: str = "main"  # swarm name; peers of different swarms do not see each other
    ttl: float = 20.0  # seconds an announcement stays valid: a killed peer vanishes at most this long after
    heartbeat_interval: float = 5.0  # seconds between re-announcements; several must fit in one ttl
    retry_interval: float = 1.0  # seconds before retrying a failed announcement
    leave_linger: float = 10.0  # seconds a "left" record stays visible, so observers see the departure
    records: RecordPolicy = field(default_factory=RecordPolicy)

    def validate(self) -> None:
        """Raise ``ConfigError`` if the timing cannot keep a live peer listed."""
        if not self.swarm or "/" in self.swarm:
            raise ConfigError(f"swarm name must be non-empty and contain no '/': {self.swarm!r}")
        if not 0 < self.heartbeat_interval <= self.ttl / 2:
            raise ConfigError(f"heartbeat_interval ({self.heartbeat_interval}) must be in (0, ttl/2]")
        if self.retry_interval <= 0 or self.leave_linger <= 0:
            raise ConfigError("retry_interval and leave_linger must be positive")
        self.records.validate()

    @property
    def key(self) -> str:
        """The DHT key that holds this swarm's membership."""
        return f"swarmnet/v{PROTOCOL_VERSION}/{self.swarm}/peers"


@dataclass(frozen=True)
class Member:
    """A live peer as seen in the DHT."""

    peer_id: str
    info: PeerInfo
    last_seen: float  # timestamp of its newest announcement
    expires_at: float


@dataclass(frozen=True)
class MembershipStatistics:
    """Counters of this peer's membership activity."""

    announcements: int
    failed_announcements: int
    last_announced_at: float | None
    rejected_records: dict[str, int]


class Swarm:
    """This peer's membership in a swarm: announce, heartbeat, list live peers, leave."""

    def __init__(self, transport: Transport, identity: Identity, config: MembershipConfig | None = None) -> None:
        self.config = config or MembershipConfig()
        self.config.validate()
        if transport.peer_id != identity.peer_id:
            raise ConfigError(f"transport peer id {transport.peer_id} is not the identity's {identity.peer_id}")
        self._transport, self._identity = transport, identity
        self._verifier = RecordVerifier(self.config.records)
        self._info: PeerInfo | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_expiry = 0.0
        self._announcements = self._failures = 0
        self._last_announced_at: float | None = None

    async def join(self, info: PeerInfo) -> bool:
        """Announce ``info`` now and keep refreshing it until ``leave()``; returns the first store's success."""
        self._info = info.model_copy(update={"session": info.session or secrets.token_hex(8)})
        ok = await self.announce()
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="swarmnet-heartbeat")
        return ok

    async def update(self, **changes: object) -> bool:
        """Change fields of our announcement (e.g. a new bandwidth figure) and announce it now."""
        if self._info is None:
            raise RuntimeError("join() first")
        self._info = PeerInfo.model_validate({**self._info.model_dump(), **changes})  # validates the changes
        return await self.announce()

    async def announce(self) -> bool:
        """Store a fresh announcement; returns whether the DHT accepted it."""
        if self._info is None:
            raise RuntimeError("join() first")
        now = self._transport.clock.time()
        return await self._publish(self._info, now, now + self.config.ttl)

    async def leave(self) -> None:
        """Stop heartbeats and mark this peer as gone at once. Safe to call twice."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._info is None or self._info.state == "left":
            return
        self._info = self._info.model_copy(update={"state": "left"})
        now = self._transport.clock.time()
        # The DHT keeps whichever value expires last, so the farewell must outlive the last heartbeat.
        expires_at = max(now + self.config.leave_linger, self._last_expiry + 1e-3)
        if not await self._publish(self._info, now, expires_at):
            logger.warning("could not publish departure; peers will drop us when our record expires")

    async def peers(self, *, include_self: bool = True) -> list[Member]:
        """Live peers of the swarm whose records verify, sorted by peer id."""
        key = self.config.key
        now = self._transport.clock.time()
        stored = {subkey: value.value for subkey, value in (await self._transport.get(key)).items()}
        records, _ = self._verifier.owned(stored, PeerInfo, key=key, now=now)
        members = [
            Member(r.peer_id, r.payload, r.timestamp, r.expires_at)
            for r in records
            if r.payload.state == "online" and (include_self or r.peer_id != self._identity.peer_id)
        ]
        return sorted(members, key=lambda m: m.peer_id)

    def statistics(self) -> MembershipStatistics:
        """A snapshot of announcement counters and rejected-record reasons."""
        return MembershipStatistics(
            announcements=self._announcements,
            failed_announcements=self._failures,
            last_announced_at=self._last_announced_at,
            rejected_records=dict(self._verifier.rejections),
        )

    async def _publish(self, info: PeerInfo, now: float, expires_at: float) -> bool:
        peer_id = self._identity.peer_id
        value = sign_record(
            self._identity, info, key=self.config.key, subkey=peer_id, timestamp=now, expires_at=expires_at
        )
        ok = await self._transport.store(self.config.key, value, expires_at, subkey=peer_id)
        if ok:
            self._announcements += 1
            self._last_announced_at = now
            self._last_expiry = max(self._last_expiry, expires_at)
        else:
            self._failures += 1
        return ok

    async def _heartbeat_loop(self) -> None:
        delay = self.config.heartbeat_interval
        while True:
            await asyncio.sleep(delay)
            try:
                ok = await self.announce()
            except TransportClosed:
                logger.debug("transport closed; heartbeats stop")
                return
            except Exception:
                logger.exception("heartbeat failed")
                ok = False
            if not ok:
                logger.warning("announcement not stored; retrying in %.1fs", self.config.retry_interval)
            delay = self.config.heartbeat_interval if ok else self.config.retry_interval
