"""The round engine's one condition variable (``rounds.py``): every state change notifies it, and every
wait (the engine's and the clients' long polls) re-checks its predicate on it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

__all__ = ["IDLE_RECHECK_S", "RoundSignal"]

IDLE_RECHECK_S = 1.0  # the active set changes with time alone, so idle waits wake up this often


class RoundSignal:
    """Wake-ups for waiters on the round state, and the engine's stop flag."""

    def __init__(self) -> None:
        self.changed = asyncio.Condition()
        self.stopping = False

    async def notify(self) -> None:
        """Wake every waiter to re-check its condition."""
        async with self.changed:
            self.changed.notify_all()

    async def stop(self) -> None:
        """Make every wait return False at its next check."""
        self.stopping = True
        await self.notify()

    async def wait(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Wait until ``predicate()``; False on stop or at ``deadline`` (monotonic) with it still false."""
        async with self.changed:
            while not predicate():
                if self.stopping:
                    return False
                left = IDLE_RECHECK_S if deadline is None else min(IDLE_RECHECK_S, deadline - time.monotonic())
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), left)
            return True
