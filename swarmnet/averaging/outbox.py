"""An ``Outbox``: the chunks of one message to one peer, which may still be produced while it streams."""

from __future__ import annotations

import asyncio

from swarmnet.averaging.messages import DataHeader

__all__ = ["Outbox"]


class Outbox:
    """``count`` chunks, appended in order; a sender streams each as soon as it exists.

    A pipelined reducer reduces chunk ``j`` of its range while later parts still arrive, and the
    all-gather of chunk ``j`` starts at once; an outbox filled up front is a plain chunked message.
    """

    def __init__(self, count: int, items: list[tuple[DataHeader, bytes]] | None = None) -> None:
        self.count = count
        self.items: list[tuple[DataHeader, bytes]] = list(items or [])
        self._grown = asyncio.Event()

    def append(self, header: DataHeader, payload: bytes) -> None:
        """Add the next chunk (header and codec payload)."""
        if len(self.items) >= self.count:
            raise ValueError(f"an outbox of {self.count} chunks is full")
        self.items.append((header, payload))
        self._grown.set()

    async def get(self, index: int) -> tuple[DataHeader, bytes]:
        """Chunk ``index``, once it has been appended."""
        while len(self.items) <= index:
            self._grown.clear()
            await self._grown.wait()
        return self.items[index]
