"""Swarm membership: each peer announces a signed ``PeerInfo`` and refreshes it by heartbeat.

All announcements of one swarm live under one DHT key, one subkey per peer (its peer id), so a
single lookup lists the swarm. A peer that dies stops refreshing and its record expires after
``ttl``; a peer that leaves cleanly overwrites its slot with a ``state="left"`` record at once.

Lifetimes are bounded twice: storage nodes and readers refuse announcements living longer than
``keyspace.MEMBERSHIP_MAX_LIFETIME``, and a reader lists a peer for at most twice its own ``ttl``
after that peer's newest announcement, whatever expiry the peer signed.

What a peer says about its capacity (``compute_gflops``, ``bandwidth_mbps``, its device) is a
claim nobody checked: readers clamp it to plausible bounds, show it as self-reported, and nothing
routes work on it (work goes by what a peer measures itself, e.g. arrival rates in averaging).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from swarmnet.errors import ConfigError, TransportClosed
from swarmnet.identity import Identity
from swarmnet.keyspace import MEMBERSHIP_MAX_LIFETIME, family_of
from swarmnet.records import Payload, RecordPolicy, RecordVerifier, sign_record
from swarmnet.transport.base import Transport
from swarmnet.version import PROTOCOL_VERSION, __version__

__all__ = [
    "MAX_CLAIMED_GFLOPS",
    "MAX_CLAIMED_MBPS",
    "DeviceInfo",
    "Member",
    "MembershipConfig",
    "MembershipStatistics",
    "PeerInfo",
    "Swarm",
]

logger = logging.getLogger(__name__)

# Plausible ceilings of what one peer may claim; higher claims are read as these. 10 PFLOP/s is
# above any single host's fp32 (even TF32) matmul rate today, 800 Gbit/s above any single NIC port.
MAX_CLAIMED_GFLOPS = 1e7
MAX_CLAIMED_MBPS = 8e5
# A reader lists a peer this many of its own ttls after the peer's newest announcement at most: a
# peer configured with up to twice our ttl (heartbeats at most ttl/2 apart) never blinks out.
READER_TTL_FACTOR = 2.0

_Role = Annotated[str, StringConstraints(max_length=32)]
_Address = Annotated[str, StringConstraints(max_length=256)]


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
    roles: tuple[_Role, ...] = Field(default=(), max_length=16)
    device: DeviceInfo = DeviceInfo()
    # Self-reported capacity: the peer's own fp32 matmul benchmark and link figure. Clamped to the
    # MAX_CLAIMED_* bounds when read; informative only (status, monitor), never used to route work.
    compute_gflops: float | None = Field(default=None, ge=0)
    bandwidth_mbps: float | None = Field(default=None, ge=0)  # link, Mbit/s
    bandwidth_source: Literal["measured", "configured", "unknown"] = "unknown"  # as the peer says
    addresses: tuple[_Address, ...] = Field(default=(), max_length=32)  # multiaddrs others can dial
    session: str = Field(default="", max_length=64)  # random per process start: tells restarts apart
    started_at: float = 0.0  # the peer's clock when it started
    state: Literal["online", "left"] = "online"

    @field_validator("compute_gflops")
    @classmethod
    def _plausible_gflops(cls, value: float | None) -> float | None:
        return None if value is None else min(value, MAX_CLAIMED_GFLOPS)

    @field_validator("bandwidth_mbps")
    @classmethod
    def _plausible_mbps(cls, value: float | None) -> float | None:
        return None if value is None else min(value, MAX_CLAIMED_MBPS)


@dataclass(frozen=True, kw_only=True)
class MembershipConfig:
    """How a peer announces itself."""

    swarm: str = "main"  # swarm name; peers of different swarms do not see each other
    # Seconds an announcement stays valid: a killed peer vanishes at most this long after. At most
    # keyspace.MEMBERSHIP_MAX_LIFETIME, which storage nodes enforce.
    ttl: float = 20.0
    heartbeat_interval: float = 5.0  # seconds between re-announcements; several must fit in one ttl
    retry_interval: float = 1.0  # seconds before retrying a failed announcement
    leave_linger: float = 10.0  # seconds a "left" record stays visible, so observers see the departure
    records: RecordPolicy = field(default_factory=RecordPolicy)

    def validate(self) -> None:
        """Raise ``ConfigError`` if the timing cannot keep a live peer listed."""
        if not 0 < len(self.swarm) <= 128 or "/" in self.swarm:
            raise ConfigError(f"swarm name must be 1-128 characters without '/': {self.swarm!r}")
        if not 0 < self.ttl <= MEMBERSHIP_MAX_LIFETIME or not 0 < self.leave_linger <= MEMBERSHIP_MAX_LIFETIME:
            raise ConfigError(f"ttl and leave_linger must be in (0, {MEMBERSHIP_MAX_LIFETIME:g}] seconds")
        if not 0 < self.heartbeat_interval <= self.ttl / 2:
            raise ConfigError(f"heartbeat_interval ({self.heartbeat_interval}) must be in (0, ttl/2]")
        if self.retry_interval <= 0:
            raise ConfigError("retry_interval must be positive")
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
    expires_at: float  # when it drops from our listing: its signed expiry, capped by our ttl


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
        family = family_of(self.config.key)
        assert family is not None, "validate() admits only swarm names that make membership keys"
        self._max_bytes = min(family.max_bytes, self.config.records.max_bytes)
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

    async def leave(self, *, publish: bool = True) -> None:
        """Stop heartbeats and mark this peer as gone at once (``publish=False``: only stop heartbeats, when
        nothing can be sent any more). Safe to call twice."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if not publish or self._info is None or self._info.state == "left":
            return
        self._info = self._info.model_copy(update={"state": "left"})
        now = self._transport.clock.time()
        # The DHT keeps whichever value expires last, so the farewell must outlive the last heartbeat.
        expires_at = max(now + self.config.leave_linger, self._last_expiry + 1e-3)
        expires_at = min(expires_at, now + MEMBERSHIP_MAX_LIFETIME)  # storage nodes refuse longer lives
        if not await self._publish(self._info, now, expires_at):
            logger.warning("could not publish departure; peers will drop us when our record expires")

    async def peers(self, *, include_self: bool = True) -> list[Member]:
        """Live peers of the swarm whose records verify, sorted by peer id."""
        key = self.config.key
        now = self._transport.clock.time()
        stored = {subkey: value.value for subkey, value in (await self._transport.get(key)).items()}
        records, _ = self._verifier.owned(stored, PeerInfo, key=key, now=now)
        horizon = READER_TTL_FACTOR * self.config.ttl
        members = [
            Member(r.peer_id, r.payload, r.timestamp, min(r.expires_at, r.timestamp + horizon))
            for r in records
            if r.payload.state == "online" and (include_self or r.peer_id != self._identity.peer_id)
        ]
        return sorted((m for m in members if m.expires_at > now), key=lambda m: m.peer_id)

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
        # Before the store, not after: a store reported as failed may have landed on some replicas
        # (hivemind reports the last replica's answer), and a heartbeat cancelled by leave() mid-store
        # may land all the same. Replicas holding either would refuse a farewell that expires sooner.
        self._last_expiry = max(self._last_expiry, expires_at)
        if len(value) > self._max_bytes:
            # Storage nodes and readers would refuse it: say why instead of "not stored".
            logger.error("announcement of %d bytes exceeds the %d-byte limit", len(value), self._max_bytes)
            ok = False
        else:
            ok = await self._transport.store(self.config.key, value, expires_at, subkey=peer_id)
        if ok:
            self._announcements += 1
            self._last_announced_at = now
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
