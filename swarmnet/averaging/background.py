"""Background work of a round: sends run together, best-effort sends finished within a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

__all__ = ["finish", "together", "until_set"]

logger = logging.getLogger(__name__)


async def together(sends: Sequence[Awaitable[None]]) -> None:
    """Run sends concurrently, so encoding and transfers to different members overlap.

    A send that fails unexpectedly is logged; it never stops the others or the round.
    """
    for result in await asyncio.gather(*sends, return_exceptions=True):
        if isinstance(result, Exception):
            logger.warning("a send failed unexpectedly: %r", result)


async def until_set(event: asyncio.Event, other: asyncio.Future[Any]) -> None:
    """Wait until ``event`` is set or ``other`` is done."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter, other], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter


async def finish(sending: asyncio.Future[Any], timeout: float) -> None:
    """Wait for background sends; give up (cancelling them) after ``timeout``: they are best effort."""
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(sending, timeout)
