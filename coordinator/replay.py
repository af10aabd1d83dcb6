"""Registration nonces the coordinator has accepted, kept on disk for as long as a replay could work.

A registration is signed over its timestamp and nonce, and one whose timestamp is more than the
clock-skew allowance away from now is refused. So a nonce only needs remembering while its
timestamp is within that allowance: afterwards a replay fails on the timestamp. The window lives
in ``nonces.journal`` (one fsynced line per accepted registration, written before the session
is returned), so a restarted coordinator refuses a registration it accepted before the restart.

When the window is full (``capacity`` registrations within the allowance) new registrations are
refused with RESOURCE_EXHAUSTED until old ones age out: the coordinator never forgets a nonce that
could still be replayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc

from swarmnet.coordinator.journal import Journal
from swarmnet.coordinator.rejection import Rejected

__all__ = ["ReplayWindow"]


class ReplayWindow:
    """The nonces of registrations accepted within ``window_s`` of now, persisted in ``path``."""

    def __init__(
        self, path: Path, window_s: float, capacity: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._journal = Journal(path)
        self._window_ms = window_s * 1000
        self._capacity = capacity
        self._clock = clock
        self._seen: dict[bytes, int] = {}  # nonce -> the registration's timestamp (ms)
        for entry in self._journal.read():
            try:
                self._seen[bytes.fromhex(entry["n"])] = int(entry["t"])
            except (KeyError, TypeError, ValueError):
                continue  # a hand-edited or foreign line: it protects nothing
        self._prune()
        self._journal.rewrite(self._entries())

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, nonce: bytes) -> bool:
        """Whether a registration with ``nonce`` was accepted within the window."""
        return bytes(nonce) in self._seen

    def remember(self, nonce: bytes, timestamp_ms: int) -> None:
        """Record an accepted registration durably; ``Rejected(RESOURCE_EXHAUSTED)`` when the window is full."""
        if len(self._seen) >= self._capacity:
            self._prune()
            if len(self._seen) >= self._capacity:
                raise Rejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{len(self._seen)} registrations within the last {self._window_ms / 1000:.0f} s: retry later",
                )
        self._journal.append({"t": int(timestamp_ms), "n": bytes(nonce).hex()})
        self._seen[bytes(nonce)] = int(timestamp_ms)
        if self._journal.lines > 2 * len(self._seen) + 1024:
            self._prune()
            self._journal.rewrite(self._entries())

    def _prune(self) -> None:
        horizon = self._clock() * 1000 - self._window_ms
        self._seen = {n: t for n, t in self._seen.items() if t >= horizon}

    def _entries(self) -> list[dict[str, int | str]]:
        return [{"t": t, "n": n.hex()} for n, t in self._seen.items()]
