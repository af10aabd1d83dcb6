"""The swarm's global DiLoCo state: published digests, consensus, and verified transfer to joiners.

After every sync each trainer announces a signed ``StateAnnouncement``: the number of syncs and
inner steps so far, the SHA-256 of its global state blob, and the digest of each part of it, and
it re-announces while it trains so the record outlives long sync intervals. The *consensus* is
chosen by counting distinct announcers (``swarmnet.diloco.consensus``: a strict majority, or a
plurality of believable claims each backed by two or more peers), so a peer that averaged in a
minority group, or missed a round, sees it is off and re-fetches, while one peer announcing a far
newer round does not.

A joiner (or a peer that fell behind) fetches the consensus blob in parts, several peers at
once, checking every part against the announced part digest: a peer serving a bad part is
skipped and the part is fetched from another, so one liar cannot poison or stall the transfer.
An announcement whose size does not fit our model is refused before anything is fetched, and
the blob's own header (step and round) must say what the announcement said.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import Field

from swarmnet.diloco.consensus import Consensus, choose
from swarmnet.errors import ConfigError, ProtocolError, RemoteFault, SwarmnetError, TransportError
from swarmnet.identity import Identity
from swarmnet.records import Payload, RecordVerifier, sign_record
from swarmnet.transport.base import Transport

__all__ = ["Consensus", "GlobalState", "StateAnnouncement", "StateSync", "StateSyncConfig", "StateSyncError"]

logger = logging.getLogger(__name__)

_MAGIC = b"SWDS"
_HEADER = struct.Struct("<4sQQQ")  # magic, inner steps, syncs, numel
_MAX_PARTS = 64  # keeps an announcement (64 hex digests per part) well inside a DHT record


class StateSyncError(SwarmnetError):
    """No verified copy of the swarm's state could be fetched."""


class StateAnnouncement(Payload):
    """What a trainer says about its global state after a sync."""

    KIND = "diloco_state"
    layout: str = Field(max_length=128)  # model and optimizer layout: only equal schemas exchange state
    rounds: int = Field(ge=0)
    step: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=_HEADER.size)
    part_size: int = Field(ge=1)
    parts: list[str] = Field(max_length=_MAX_PARTS)
    holding: bool = True  # False: the peer left and serves nothing (its last word, replacing the record)


@dataclass(frozen=True)
class GlobalState:
    """The state every synced replica shares, and its wire form (header | global fp32 | momentum fp32)."""

    global_params: torch.Tensor
    momentum: torch.Tensor
    step: int
    rounds: int

    def to_bytes(self) -> bytes:
        """The blob whose SHA-256 is the state's digest."""
        header = _HEADER.pack(_MAGIC, self.step, self.rounds, self.global_params.numel())
        return header + self.global_params.numpy().tobytes() + self.momentum.numpy().tobytes()

    def digest(self) -> str:
        """SHA-256 of ``to_bytes()``."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, blob: bytes, numel: int) -> GlobalState:
        """Parse a blob, checking its header and exact size against the expected ``numel``."""
        if len(blob) != _HEADER.size + 8 * numel:
            raise ProtocolError(f"state blob of {len(blob)} bytes, expected {_HEADER.size + 8 * numel}")
        magic, step, rounds, count = _HEADER.unpack_from(blob)
        if magic != _MAGIC or count != numel:
            raise ProtocolError(f"state blob header is wrong (magic {magic!r}, numel {count} vs {numel})")
        values = torch.frombuffer(bytearray(blob[_HEADER.size :]), dtype=torch.float32)
        return cls(values[:numel].clone(), values[numel:].clone(), step, rounds)


@dataclass(frozen=True, kw_only=True)
class StateSyncConfig:
    """Where announcements live and how transfers are cut."""

    run: str
    ttl: float = 120.0  # seconds an announcement lives without being refreshed
    part_size: int = 4 << 20  # bytes per transfer part (grown so a state has at most 64 parts)
    request_timeout: float = 30.0
    max_state_bytes: int = 8 << 30  # refuse announcements of absurd sizes before fetching anything

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if not self.run or "/" in self.run or self.ttl <= 0 or self.part_size < 1024 or self.request_timeout <= 0:
            raise ConfigError(f"invalid state sync config: {self}")

    @property
    def key(self) -> str:
        """DHT key of the run's state announcements (one subkey per peer)."""
        return f"{self.run}/diloco-state"


class StateSync:
    """Publishes this peer's state, reads the swarm's consensus, serves and fetches state blobs."""

    def __init__(self, transport: Transport, identity: Identity, config: StateSyncConfig, schema: str) -> None:
        config.validate()
        self._transport, self._identity, self.config, self.schema = transport, identity, config, schema
        self._verifier = RecordVerifier()
        self._served: dict[str, bytes] = {}  # digest -> blob, the newest two (a joiner may be mid-fetch)
        self._last: StateAnnouncement | None = None  # what we announced last (``holding=False`` once withdrawn)
        self._stored_at = float("-inf")  # when we last stored it
        self._lock = asyncio.Lock()  # one store at a time: a refresh must not land after a newer announcement
        self.bytes_served = 0
        self.bytes_fetched = 0

    async def start(self) -> None:
        """Register the part-serving RPC."""
        await self._transport.add_unary_handler(f"{self.config.run}.diloco-state", self._on_part)

    async def publish(self, state: GlobalState) -> StateAnnouncement:
        """Serve ``state`` and announce it."""
        blob = state.to_bytes()
        announcement = self._announcement(blob, state)
        self._served[announcement.digest] = blob
        while len(self._served) > 2:
            del self._served[next(iter(self._served))]
        async with self._lock:
            self._last = announcement
            await self._store(announcement)
        return announcement

    async def refresh(self) -> None:
        """Store our announcement again if a third of its lifetime passed, so it never lapses while we train."""
        async with self._lock:
            due = self._transport.clock.time() - self._stored_at >= self.config.ttl / 3
            if due and self._last is not None and self._last.holding:
                await self._store(self._last)

    async def withdraw(self) -> None:
        """Stop serving and tell readers so (the DHT keeps the record that expires last: this one)."""
        self._served.clear()
        async with self._lock:
            if self._last is not None:
                self._last = self._last.model_copy(update={"holding": False})
                await self._store(self._last, extra_life=1.0)

    async def _store(self, announcement: StateAnnouncement, extra_life: float = 0.0) -> None:
        now, me = self._transport.clock.time(), self._identity.peer_id
        self._stored_at = now
        expires = now + self.config.ttl + extra_life
        key = self.config.key
        value = sign_record(self._identity, announcement, key=key, subkey=me, timestamp=now, expires_at=expires)
        try:
            if not await self._transport.store(key, value, expires, subkey=me):
                logger.warning("state announcement for round %d was not stored", announcement.rounds)
        except TransportError as e:
            logger.warning("could not announce state for round %d: %s", announcement.rounds, e)

    async def consensus(self, plausible: Callable[[str, StateAnnouncement], bool] | None = None) -> Consensus | None:
        """The state of our schema the announcers agree on (``consensus.choose``), or None."""
        return choose(await self.announcements(), me=self._identity.peer_id, plausible=plausible)

    async def announcements(self) -> dict[str, StateAnnouncement]:
        """Every verified, unexpired announcement of our schema, by peer (ours as we last made it)."""
        key, now = self.config.key, self._transport.clock.time()
        found = self._own()
        try:
            stored_values = await self._transport.get(key)
        except TransportError as e:
            logger.warning("could not read state announcements: %s", e)
            return {}
        for subkey, stored in stored_values.items():
            if subkey == self._identity.peer_id:
                continue  # ours is what we last announced, whether or not that store reached the DHT
            record = self._verifier.verify_or_none(stored.value, StateAnnouncement, key=key, subkey=subkey, now=now)
            if record is None or record.peer_id != subkey:
                continue
            announcement = record.payload
            if not announcement.holding:
                continue
            if announcement.layout != self.schema or not _well_formed(announcement, self.config):
                logger.debug("announcement by %s ignored: other schema or malformed", subkey)
                continue
            found[subkey] = announcement
        return found

    def _own(self) -> dict[str, StateAnnouncement]:
        last = self._last
        return {self._identity.peer_id: last} if last is not None and last.holding else {}

    async def fetch(self, consensus: Consensus, numel: int) -> GlobalState:
        """Download and verify the consensus state from its holders (not us), several at once."""
        announcement = consensus.announcement
        holders = [p for p in consensus.holders if p != self._identity.peer_id]
        if not holders:
            raise StateSyncError("no other peer holds the consensus state")
        if announcement.size != _HEADER.size + 8 * numel:
            raise StateSyncError(f"announced state of {announcement.size} bytes does not fit {numel} parameters")
        parts: list[bytes | None] = [None] * len(announcement.parts)
        await asyncio.gather(*(self._fetch_part(announcement, i, holders, parts) for i in range(len(parts))))
        blob = b"".join(p for p in parts if p is not None)
        if hashlib.sha256(blob).hexdigest() != announcement.digest:
            raise StateSyncError("assembled state does not match the announced digest")
        try:
            state = GlobalState.from_bytes(blob, numel)
        except ProtocolError as e:  # the announcer's own blob, digest and all: refuse it, do not crash on it
            raise StateSyncError(f"announced state is malformed: {e}") from None
        if (state.step, state.rounds) != (announcement.step, announcement.rounds):
            raise StateSyncError(
                f"state claims step {state.step}, round {state.rounds}; its announcement said "
                f"step {announcement.step}, round {announcement.rounds}"
            )
        return state

    async def _fetch_part(
        self, announcement: StateAnnouncement, index: int, holders: list[str], out: list[bytes | None]
    ) -> None:
        request = json.dumps({"digest": announcement.digest, "part": index}).encode()
        method = f"{self.config.run}.diloco-state"
        for attempt in range(len(holders)):
            peer = holders[(index + attempt) % len(holders)]  # spread parts over holders, fall back in turn
            try:
                part = await self._transport.call_unary(peer, method, request, timeout=self.config.request_timeout)
            except (TransportError, RemoteFault) as e:
                logger.info("state part %d from %s failed: %s", index, peer, e)
                continue
            if hashlib.sha256(part).hexdigest() != announcement.parts[index]:
                logger.warning("state part %d from %s does not match its digest; trying another peer", index, peer)
                continue
            out[index] = part
            self.bytes_fetched += len(part)
            return
        raise StateSyncError(f"no holder served a valid part {index} of state {announcement.digest[:12]}")

    async def _on_part(self, caller: str, request: bytes) -> bytes:
        try:
            message = json.loads(request)
            digest, index = str(message["digest"]), int(message["part"])
        except (ValueError, KeyError, TypeError) as e:
            raise ProtocolError(f"malformed state request from {caller}: {e}") from e
        blob = self._served.get(digest)
        if blob is None:
            raise ProtocolError(f"state {digest[:12]} is not served here (any more)")
        part_size = _part_size(len(blob), self.config.part_size)
        if not 0 <= index * part_size < len(blob):
            raise ProtocolError(f"state part {index} out of range")
        part = blob[index * part_size : (index + 1) * part_size]
        self.bytes_served += len(part)
        return part

    def _announcement(self, blob: bytes, state: GlobalState) -> StateAnnouncement:
        part_size = _part_size(len(blob), self.config.part_size)
        parts = [hashlib.sha256(blob[i : i + part_size]).hexdigest() for i in range(0, len(blob), part_size)]
        return StateAnnouncement(
            layout=self.schema, rounds=state.rounds, step=state.step, digest=hashlib.sha256(blob).hexdigest(),
            size=len(blob), part_size=part_size, parts=parts,
        )  # fmt: skip


def _part_size(size: int, minimum: int) -> int:
    return max(minimum, -(-size // _MAX_PARTS))


def _well_formed(announcement: StateAnnouncement, config: StateSyncConfig) -> bool:
    """Sizes consistent with the part list, and not absurd (checked before anything is fetched)."""
    size, part_size = announcement.size, announcement.part_size
    if size > config.max_state_bytes or part_size < -(-size // _MAX_PARTS):
        return False
    return len(announcement.parts) == -(-size // part_size)
