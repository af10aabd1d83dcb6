"""Reading module records from the DHT: who hosts a uid, and which uids live under a prefix."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from swarmnet.records import RecordPolicy, RecordVerifier
from swarmnet.remote.records import ModuleRecord, PrefixRecord, module_key, prefix_key
from swarmnet.transport.base import Transport

__all__ = ["ModuleDirectory", "Replica"]


@dataclass(frozen=True)
class Replica:
    """A server hosting a module, as its verified record describes it (claims unclamped)."""

    peer_id: str
    uid: str
    throughput: float
    queue: int
    max_batch: int
    expires_at: float


class ModuleDirectory:
    """Verified lookups of module records; forged, misplaced, stale or replayed records are ignored and counted."""

    def __init__(self, transport: Transport, policy: RecordPolicy | None = None) -> None:
        self._transport = transport
        self._verifier = RecordVerifier(policy)
        self._foreign = 0

    async def replicas(self, uid: str) -> list[Replica]:
        """Servers announcing ``uid`` as online, sorted by peer id."""
        key = module_key(uid)
        now = self._transport.clock.time()
        stored = {subkey: value.value for subkey, value in (await self._transport.get(key)).items()}
        records, foreign = self._verifier.owned(stored, ModuleRecord, key=key, now=now)
        self._foreign += foreign
        replicas = [
            Replica(r.peer_id, uid, r.payload.throughput, r.payload.queue, r.payload.max_batch, r.expires_at)
            for r in records
            if r.payload.uid == uid and r.payload.state == "online"
        ]
        return sorted(replicas, key=lambda r: r.peer_id)

    async def uids_under(self, prefix: str) -> dict[str, list[str]]:
        """``{uid: [server peer ids]}`` for the uids announced under ``prefix`` (only those starting with it)."""
        key = prefix_key(prefix)
        now = self._transport.clock.time()
        stored = {subkey: value.value for subkey, value in (await self._transport.get(key)).items()}
        records, foreign = self._verifier.owned(stored, PrefixRecord, key=key, now=now)
        self._foreign += foreign
        found: dict[str, list[str]] = {}
        for record in records:
            for uid in record.payload.uids:
                if uid.startswith(prefix):
                    found.setdefault(uid, []).append(record.peer_id)
        return {uid: sorted(peers) for uid, peers in sorted(found.items())}

    def rejections(self) -> dict[str, int]:
        """Ignored records by reason (``forged``, ``expired``, ``replay``, ``foreign`` slot, ...)."""
        counts = Counter(self._verifier.rejections)
        if self._foreign:
            counts["foreign"] += self._foreign
        return dict(counts)
