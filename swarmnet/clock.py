"""Clocks: wall time for real peers, virtual time for simulations.

Protocol code reads time only through a ``Clock`` (for record timestamps and expiry) and waits
only with ``asyncio.sleep`` / ``asyncio.wait_for``. Under ``run_virtual`` both follow a virtual
clock that jumps straight to the next timer whenever the loop would otherwise block, so an hour
of simulated heartbeats takes as long as the CPU work it contains.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["Clock", "LoopClock", "SystemClock", "VirtualTimeLoop", "off_loop", "run_virtual"]

T = TypeVar("T")


class Clock(Protocol):
    """Source of wall-clock time in seconds since the Unix epoch."""

    def time(self) -> float:
        """Current time in seconds since the epoch."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def time(self) -> float:
        """Current wall-clock time."""
        return time.time()


class LoopClock:
    """Wall time derived from the running event loop's clock: ``epoch + loop.time()``.

    Under a ``VirtualTimeLoop`` this is virtual time; records and timers then agree.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: float = 1_700_000_000.0) -> None:
        self._loop = loop
        self._offset = epoch - loop.time()

    def time(self) -> float:
        """Current (possibly virtual) time."""
        return self._offset + self._loop.time()


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that never blocks: a wait of ``timeout`` seconds advances virtual time instead."""

    def __init__(self) -> None:
        super().__init__()
        self.virtual_now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events and timeout is not None and timeout > 0:
            self.virtual_now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when every task is waiting on a timer.

    Real file descriptors still work (polled without blocking), but a loop that waits on
    nothing but I/O with no timer pending would spin: use it for in-memory simulations only.
    """

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        """Virtual monotonic time in seconds since the loop was created."""
        return self._jumping.virtual_now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh ``VirtualTimeLoop``; like ``asyncio.run``, cancel what is left, then close."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(_cancel_all(asyncio.all_tasks(loop)))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run tensor work in a worker thread (torch releases the GIL), so the event loop keeps reading the
    sockets meanwhile and links do not stall while a peer computes. Under a virtual clock
    (simulations) it runs inline: time there only passes while the loop waits, never during work."""
    if isinstance(asyncio.get_running_loop(), VirtualTimeLoop):
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
