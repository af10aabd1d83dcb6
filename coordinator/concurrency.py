"""Caps on how many calls of one kind a client (or everyone together) may have open at once.

A long poll, an adapter download or an update stream each hold coroutine state and, for the
streams, buffers that grow with every call a client opens without finishing. The SDK opens one
of each at a time; a cap a little above that keeps the coordinator's memory bounded whatever a
client does, and answers the excess at once with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from swarmnet.coordinator.rejection import Rejected

__all__ = ["OpenCalls"]


class OpenCalls:
    """Counts open calls per key (a client id; ``""`` for one shared pool) and refuses past ``limit``."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._open: dict[str, int] = {}

    def keys(self) -> frozenset[str]:
        """Keys with at least one call open."""
        return frozenset(self._open)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Count one call for ``key`` while the block runs; ``Rejected(RESOURCE_EXHAUSTED)`` when full."""
        count = self._open.get(key, 0)
        if count >= self.limit:
            raise Rejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{count} {self.what} already open{' from this client' if key else ''} (at most {self.limit})",
            )
        self._open[key] = count + 1
        try:
            yield
        finally:
            left = self._open[key] - 1
            if left:
                self._open[key] = left
            else:
                del self._open[key]
