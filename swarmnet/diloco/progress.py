"""Where the swarm's trainers are: each announces the newest sync point it reached.

A trainer that sees another one already at its next sync point stops its inner steps early and
joins the exchange with a weight equal to the steps it did (hivemind's rule: rounds follow the
swarm's progress, not one peer's). So a slow peer, a late starter or a joiner falls in step with
the others instead of missing every round.
"""

from __future__ import annotations

import logging

from pydantic import Field

from swarmnet.errors import TransportError
from swarmnet.identity import Identity
from swarmnet.records import Payload, RecordVerifier, sign_record
from swarmnet.transport.base import Transport

__all__ = ["ProgressBoard", "SyncReached"]

logger = logging.getLogger(__name__)


class SyncReached(Payload):
    """A trainer reached the sync point at inner step ``step``."""

    KIND = "diloco_progress"
    layout: str = Field(max_length=128)
    step: int = Field(ge=0)


class ProgressBoard:
    """Announces our sync points and reads the furthest one any other trainer of the run reached."""

    def __init__(self, transport: Transport, identity: Identity, run: str, schema: str, ttl: float = 60.0) -> None:
        self._transport, self._identity, self.schema, self.ttl = transport, identity, schema, ttl
        self.key = f"{run}/diloco-progress"
        self._verifier = RecordVerifier()
        self._announced = False

    async def reached(self, step: int) -> None:
        """Announce that we are at the sync point of ``step``."""
        await self._store(step, self.ttl)
        self._announced = True

    async def leave(self) -> None:
        """Withdraw our progress (step 0 counts for nothing), so nobody hurries to follow a peer that left."""
        if self._announced:
            await self._store(0, self.ttl + 1.0)  # expires after, so replaces, our last announcement

    async def _store(self, step: int, ttl: float) -> None:
        now, me = self._transport.clock.time(), self._identity.peer_id
        payload = SyncReached(layout=self.schema, step=step)
        value = sign_record(self._identity, payload, key=self.key, subkey=me, timestamp=now, expires_at=now + ttl)
        try:
            await self._transport.store(self.key, value, now + ttl, subkey=me)
        except TransportError as e:
            logger.debug("progress announcement failed: %s", e)

    async def furthest(self) -> int:
        """The largest sync step another live trainer of our schema announced (0 if none)."""
        now, me = self._transport.clock.time(), self._identity.peer_id
        try:
            stored = await self._transport.get(self.key)
        except TransportError as e:
            logger.debug("progress lookup failed: %s", e)
            return 0
        furthest = 0
        for subkey, value in stored.items():
            if subkey == me:
                continue
            record = self._verifier.verify_or_none(value.value, SyncReached, key=self.key, subkey=subkey, now=now)
            if record is not None and record.peer_id == subkey and record.payload.layout == self.schema:
                furthest = max(furthest, record.payload.step)
        return furthest
