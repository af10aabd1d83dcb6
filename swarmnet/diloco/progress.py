"""Where the swarm's trainers are: each announces the newest sync point it reached.

A trainer that sees most of the other trainers already at its next sync point stops its inner
steps early and joins the exchange with a weight equal to the steps it did (rounds follow the
swarm's progress). So a slow peer, a late starter or a joiner falls in step with the others
instead of missing every round. *Most* is a strict majority of the other trainers with a live
record, each claim also within the pace bound (``swarmnet.diloco.pace``): one peer announcing a
far-ahead sync point, or a minority announcing the next one all the time, cannot cut the others'
inner steps short. Records are re-stored while a trainer trains, so a long sync interval does not
let honest records lapse while an attacker keeps its own alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from pydantic import Field

from swarmnet.errors import TransportError
from swarmnet.identity import Identity
from swarmnet.records import Payload, RecordVerifier, sign_record
from swarmnet.transport.base import Transport

__all__ = ["ProgressBoard", "SyncReached", "swarm_reached"]

logger = logging.getLogger(__name__)


class SyncReached(Payload):
    """A trainer reached the sync point at inner step ``step``."""

    KIND = "diloco_progress"
    layout: str = Field(max_length=128)
    step: int = Field(ge=0)


def swarm_reached(positions: Mapping[str, int], target: int, plausible: Callable[[str, int], bool]) -> bool:
    """Whether more than half of the other trainers (``positions``: peer -> sync step) are at ``target``."""
    there = sum(1 for peer, step in positions.items() if step >= target and plausible(peer, step))
    return 2 * there > len(positions)


class ProgressBoard:
    """Announces our sync points and reads the ones the other trainers of the run reached."""

    def __init__(self, transport: Transport, identity: Identity, run: str, schema: str, ttl: float = 60.0) -> None:
        self._transport, self._identity, self.schema, self.ttl = transport, identity, schema, ttl
        self.key = f"{run}/diloco-progress"
        self._verifier = RecordVerifier()
        self._step: int | None = None  # our last announced sync step; None before the first and after leaving
        self._stored_at = float("-inf")
        self._lock = asyncio.Lock()  # a refresh must not land after (and so replace) a newer announcement

    async def reached(self, step: int) -> None:
        """Announce that we are at the sync point of ``step``."""
        async with self._lock:
            self._step = step
            await self._store(step, self.ttl)

    async def refresh(self) -> None:
        """Announce our last sync point again if a third of its lifetime passed."""
        async with self._lock:
            if self._step is not None and self._transport.clock.time() - self._stored_at >= self.ttl / 3:
                await self._store(self._step, self.ttl)

    async def leave(self) -> None:
        """Withdraw our progress (step 0 counts for nothing), so nobody hurries to follow a peer that left."""
        async with self._lock:
            if self._step is not None:
                self._step = None
                await self._store(0, self.ttl + 1.0)  # expires after, so replaces, our last announcement

    async def _store(self, step: int, ttl: float) -> None:
        now, me = self._transport.clock.time(), self._identity.peer_id
        self._stored_at = now
        payload = SyncReached(layout=self.schema, step=step)
        value = sign_record(self._identity, payload, key=self.key, subkey=me, timestamp=now, expires_at=now + ttl)
        try:
            await self._transport.store(self.key, value, now + ttl, subkey=me)
        except TransportError as e:
            logger.debug("progress announcement failed: %s", e)

    async def positions(self) -> dict[str, int] | None:
        """The sync step each other live trainer of our schema announced last; None if the lookup failed."""
        now, me = self._transport.clock.time(), self._identity.peer_id
        try:
            stored = await self._transport.get(self.key)
        except TransportError as e:
            logger.debug("progress lookup failed: %s", e)
            return None
        positions = {}
        for subkey, value in stored.items():
            if subkey == me:
                continue
            record = self._verifier.verify_or_none(value.value, SyncReached, key=self.key, subkey=subkey, now=now)
            if record is None or record.peer_id != subkey or record.payload.layout != self.schema:
                continue
            if record.payload.step > 0:  # step 0: the peer left
                positions[subkey] = record.payload.step
        return positions
