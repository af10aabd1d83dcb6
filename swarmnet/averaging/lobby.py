"""Where a group's data waits for this peer's round of that group to start.

A member may send us data before our round of the group is set up: its step started sooner, or our
event loop runs late on a busy machine, so its chunk can even overtake the commit (or, when we lead,
the answer to our commit) that tells us about the group. Refusing it would drop a healthy peer from
the round, so a chunk for a group that has not started here waits for it, up to a bound. Only a group
whose round already ended here is refused at once (the ids of the latest ``finished`` rounds are kept).

Waiting chunks are bounded, so that an outsider sending chunks for made-up groups cannot make us hold
unbounded data or waiters: per caller (count and bytes) for every group that has not started, and
overall (count and bytes) for groups we do not know of (``expected=False``: not one we joined or are
reserved for). A chunk past a bound is refused at once, saying which.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from swarmnet.errors import ConfigError

__all__ = ["LobbyLimits", "RoundLobby"]

R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class LobbyLimits:
    """Bounds on data waiting for rounds that have not started here."""

    per_caller: int = 8  # chunks one caller may have waiting at once (a member streams a few messages at a time)
    per_caller_bytes: int = 8 << 20  # their bytes
    total: int = 64  # chunks waiting for groups we do not know of, from all callers together
    total_bytes: int = 64 << 20  # their bytes
    finished: int = 256  # ids of the latest rounds that ended here: their data is refused at once

    @classmethod
    def for_chunks(cls, chunk_bytes: int) -> LobbyLimits:
        """The defaults, with byte bounds that fit a few chunks of ``chunk_bytes`` per caller."""
        per_caller = max(cls.per_caller_bytes, 4 * (chunk_bytes + (64 << 10)))
        return cls(per_caller_bytes=per_caller, total_bytes=max(cls.total_bytes, 8 * per_caller))

    def validate(self) -> None:
        """Raise ``ConfigError`` for a bound below one."""
        if min(self.per_caller, self.per_caller_bytes, self.total, self.total_bytes, self.finished) < 1:
            raise ConfigError(f"lobby limits must be positive: {self}")


class RoundLobby(Generic[R]):
    """The rounds running here by group id, and the data that waits for a round to start."""

    def __init__(self, limits: LobbyLimits | None = None) -> None:
        self.limits = limits or LobbyLimits()
        self.limits.validate()
        self._open: dict[str, R] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._changed = asyncio.Condition()
        self._by_caller: Counter[str] = Counter()
        self._bytes_by_caller: Counter[str] = Counter()
        self._unknown, self._unknown_bytes = 0, 0

    @property
    def waiting(self) -> int:
        """Chunks waiting now, from every caller."""
        return sum(self._by_caller.values())

    async def open(self, group_id: str, round_: R) -> None:
        """Our round of ``group_id`` started: hand it the data waiting for it."""
        async with self._changed:
            self._open[group_id] = round_
            self._changed.notify_all()

    async def close(self, group_id: str) -> None:
        """Our round of ``group_id`` ended: data for it is refused from now on."""
        async with self._changed:
            self._open.pop(group_id, None)
            self._finished[group_id] = None
            while len(self._finished) > self.limits.finished:
                self._finished.popitem(last=False)
            self._changed.notify_all()

    def find_now(self, group_id: str) -> R | None:
        """The round of ``group_id`` if it is running here now."""
        return self._open.get(group_id)

    def finished(self, group_id: str) -> bool:
        """Whether our round of ``group_id`` ended lately."""
        return group_id in self._finished

    async def find(self, caller: str, group_id: str, size: int, *, expected: bool, timeout: float) -> R | str:
        """The round of ``group_id``, once it starts here (within ``timeout`` seconds), or why not.

        ``size``: bytes of the chunk that waits; ``expected``: the group is one we joined or are reserved
        for, so it is sure to start unless our step fails (its wait is bounded per caller only).
        """
        if (round_ := self._open.get(group_id)) is not None:
            return round_
        if group_id in self._finished:
            return "group finished here"
        if (full := self._full(caller, size, expected)) is not None:
            return full
        self._by_caller[caller] += 1
        self._bytes_by_caller[caller] += size
        if not expected:
            self._unknown, self._unknown_bytes = self._unknown + 1, self._unknown_bytes + size
        try:
            async with self._changed:
                ready = lambda: group_id in self._open or group_id in self._finished  # noqa: E731
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
        except TimeoutError:
            return f"no such group here after waiting {timeout:g} s (never joined)"
        finally:
            self._release(caller, size, expected)
        round_ = self._open.get(group_id)
        return "group finished here" if round_ is None else round_

    def _full(self, caller: str, size: int, expected: bool) -> str | None:
        """Why a chunk of ``size`` bytes from ``caller`` may not wait, or None if it may."""
        limits, count, held = self.limits, self._by_caller[caller], self._bytes_by_caller[caller]
        if count >= limits.per_caller or held + size > limits.per_caller_bytes:
            return f"group not started here, and {count} chunks ({held} bytes) from you already wait for groups here"
        if not expected and (self._unknown >= limits.total or self._unknown_bytes + size > limits.total_bytes):
            return "no such group here, and too many chunks already wait for groups unknown here"
        return None

    def _release(self, caller: str, size: int, expected: bool) -> None:
        self._by_caller[caller] -= 1
        self._bytes_by_caller[caller] -= size
        if self._by_caller[caller] <= 0:
            del self._by_caller[caller], self._bytes_by_caller[caller]
        if not expected:
            self._unknown, self._unknown_bytes = self._unknown - 1, self._unknown_bytes - size
