"""Waiting for a condition with a deadline, instead of sleeping a guessed time.

``poll_until`` (threads, processes) reads the machine's monotonic clock; ``apoll_until`` reads the
running loop's clock, so under ``run_virtual`` its deadline and interval are virtual seconds and
a poll that would wait a minute costs only the work the loop does meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["apoll_until", "poll_until"]

T = TypeVar("T")


def poll_until(
    predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that (typed without ``None``:
    a predicate may answer ``None`` for "not yet").

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message names ``what`` was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def apoll_until(
    predicate: Callable[[], Awaitable[T | None]], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Await ``predicate`` until it returns something truthy, and return that; times are the loop's
    (virtual under ``run_virtual``).

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message names ``what`` was awaited.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
