"""The storage behind ``MemoryNetwork``: one logical DHT with hivemind's expiry semantics.

A real Kademlia DHT replicates each key on a few nodes; a simulation needs only what a client
observes, which is one table per key with hivemind's replacement rules:

* a value replaces an existing one only if it expires strictly later (per subkey for dictionary
  values), and a value that is already expired is refused;
* a subkey stored under a key that holds a plain value replaces the plain value (turning the key
  into a dictionary) only if it expires later than the plain value; a plain value replaces a
  dictionary only if it expires later than every subkey in it;
* expired entries are invisible, and are swept from memory as time passes.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from swarmnet.transport.base import StoredValue

__all__ = ["MemoryDHT"]


@dataclass(slots=True)
class _Dictionary:
    """A dictionary value: subkey -> value, plus the latest expiry ever stored in it."""

    # Keys are always subkeys (str); typed like ``Transport.get``'s answer so a get is a plain copy.
    entries: dict[str | None, StoredValue] = field(default_factory=dict)
    # Never decreases. A plain value must outlive this to replace the dictionary; once every
    # subkey has expired it is in the past anyway, so it need not track removals.
    latest: float = float("-inf")


class MemoryDHT:
    """A single in-process key -> value table with hivemind's replacement and expiry rules.

    Operations cost O(log n) amortized, plus O(subkeys) for a ``get`` of a dictionary value:
    nothing scans the whole table, so thousands of peers can share one.
    """

    def __init__(self, max_value_bytes: int) -> None:
        self._max_value_bytes = max_value_bytes
        self._data: dict[str, StoredValue | _Dictionary] = {}
        # (expires_at, tie-breaker, key, subkey) for every accepted store. Entries that were later
        # replaced stay in the heap and are skipped when popped: cheaper than deleting them.
        self._expiry_heap: list[tuple[float, int, str, str | None]] = []
        self._tiebreak = itertools.count()

    def __len__(self) -> int:
        """Number of keys currently held (including ones that expired but were not swept yet)."""
        return len(self._data)

    def store(self, key: str, value: bytes, expires_at: float, subkey: str | None, now: float) -> bool:
        """Store ``value`` at time ``now`` and return whether it was accepted."""
        self.sweep(now)
        if len(value) > self._max_value_bytes or not expires_at > now:
            return False
        new = StoredValue(value, expires_at)
        existing = self._data.get(key)
        if subkey is None:
            if existing is not None and _expiry(existing) >= expires_at:
                return False
            self._data[key] = new
        elif isinstance(existing, _Dictionary):
            previous = existing.entries.get(subkey)
            if previous is not None and previous.expires_at >= expires_at:
                return False
            existing.entries[subkey] = new
            existing.latest = max(existing.latest, expires_at)
        else:
            if existing is not None and existing.expires_at >= expires_at:
                return False
            self._data[key] = _Dictionary({subkey: new}, expires_at)
        heapq.heappush(self._expiry_heap, (expires_at, next(self._tiebreak), key, subkey))
        return True

    def get(self, key: str, now: float) -> dict[str | None, StoredValue]:
        """Return the values under ``key`` that are live at ``now`` (a fresh dict the caller may keep)."""
        self.sweep(now)
        existing = self._data.get(key)
        if existing is None:
            return {}
        if isinstance(existing, StoredValue):
            return {None: existing} if existing.expires_at > now else {}
        # Every stored entry has a heap entry until it expires, so after the sweep all of them are
        # live and a plain copy (C speed, no per-entry Python filter) is the answer.
        return dict(existing.entries)

    def sweep(self, now: float) -> None:
        """Forget every entry that expired at or before ``now``."""
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, _, key, subkey = heapq.heappop(heap)
            existing = self._data.get(key)
            if existing is None:
                continue
            if isinstance(existing, StoredValue):
                # Only drop the exact value this heap entry was pushed for; a newer one stays.
                if subkey is None and existing.expires_at == expires_at:
                    del self._data[key]
            elif subkey is not None:
                entry = existing.entries.get(subkey)
                if entry is not None and entry.expires_at == expires_at:
                    del existing.entries[subkey]
                    if not existing.entries:
                        del self._data[key]


def _expiry(entry: StoredValue | _Dictionary) -> float:
    return entry.latest if isinstance(entry, _Dictionary) else entry.expires_at
