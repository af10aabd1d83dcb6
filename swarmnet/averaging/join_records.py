"""The round's join records in the DHT (``matchmaking.py``): ours stored, and stored again when it went
missing; the others' read and verified, each once however often the same records are polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from swarmnet.averaging.seeking import GroupJoin, Seeking
from swarmnet.errors import TransportClosed
from swarmnet.identity import Identity
from swarmnet.records import Record, RecordVerifier, sign_record
from swarmnet.transport.base import Transport

__all__ = ["JoinRecords"]

logger = logging.getLogger(__name__)

_CACHE_LIMIT = 16_384  # verified records kept: the cache is cleared when it holds that many


class JoinRecords:
    """Signed join records of one peer's rounds, under the DHT keys the matchmaker names."""

    def __init__(self, transport: Transport, identity: Identity) -> None:
        self._transport, self._identity = transport, identity
        self._verifier = RecordVerifier()
        self._own_bandwidth = 0.0
        self._verified_cache: dict[tuple[str, str | None, bytes], Record[GroupJoin] | None] = {}

    async def announce(self, dht_key: str, join: GroupJoin, expires_at: float) -> None:
        """Store our signed ``join`` under ``dht_key`` until ``expires_at``; a failed store is only logged."""
        now = self._transport.clock.time()
        me = self._identity.peer_id
        value = sign_record(self._identity, join, key=dht_key, subkey=me, timestamp=now, expires_at=expires_at)
        self._own_bandwidth = join.bandwidth_mbps
        with contextlib.suppress(TransportClosed):
            if not await self._transport.store(dht_key, value, expires_at, subkey=me):
                logger.warning("could not store our join record under %s; others may not see it", dht_key)

    async def announce_again(self, state: Seeking) -> None:
        """Store our join record again: it is not in the DHT (the store failed, or the record was lost),
        and without it nobody counts us, so a group that needs us would never form. At most once a
        second, with the same expiry."""
        loop = asyncio.get_running_loop()
        if state.join is None or loop.time() - state.announced_at < 1.0:
            return
        dht_key, join, expires_at = state.join
        logger.info("our join record under %s is not in the DHT; storing it again", dht_key)
        state.announced_at = loop.time()
        await self.announce(dht_key, join, expires_at)

    async def candidates(self, dht_key: str) -> tuple[dict[str, float], set[str], bool]:
        """The peers still looking (with their bandwidths, us included), those already grouped, and
        whether our own record was among what the DHT returned."""
        now = self._transport.clock.time()
        found, grouped = {self._identity.peer_id: self._own_bandwidth}, set()
        records = await self._transport.get(dht_key)
        for subkey, stored in records.items():
            record = self._verified(dht_key, subkey, stored.value, now)
            if record is None or record.peer_id != subkey or record.expires_at <= now:
                continue
            if record.payload.grouped:
                grouped.add(subkey)
            else:
                found[subkey] = record.payload.bandwidth_mbps
        return found, grouped, self._identity.peer_id in records

    def _verified(self, dht_key: str, subkey: str | None, value: bytes, now: float) -> Record[GroupJoin] | None:
        """Verify a join record once: we poll the same records many times while waiting."""
        cache_key = (dht_key, subkey, value)
        if cache_key not in self._verified_cache:
            if len(self._verified_cache) >= _CACHE_LIMIT:
                self._verified_cache.clear()
            record = self._verifier.verify_or_none(value, GroupJoin, key=dht_key, subkey=subkey, now=now)
            self._verified_cache[cache_key] = record
        return self._verified_cache[cache_key]
