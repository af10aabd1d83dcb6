"""An ``Outbox``: the chunks of one message to one peer, which may still be produced while it streams."""

from __future__ import annotations

import asyncio

from swarmnet.averaging.messages import DataHeader

__all__ = ["Outbox"]


class Outbox:
    """``count`` chunks, appended in order; a sender streams each as soon as it exists.

    A pipelined reducer reduces chunk ``j`` of its range while later parts still arrive, and the
    all-gather of chunk ``j`` starts at once; an outbox filled before it streams is a plain chunked message.

    An outbox may be ``paced`` by another one to the same peer: its chunk ``j`` is handed out only
    once the other has handed out the same fraction of its own chunks (or was ``released``). A
    member's results to a peer are paced by its part for that peer: both share one connection, and
    results are of no use to the peer before its reduce-scatter ends, while the part is what that
    reduce-scatter waits for. In step, results trail parts anyway and pacing never delays them; a
    member that fell behind (it started late, or its link is slow) gives its parts at least half of
    each connection instead of letting a backlog of results crowd them out.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.items: list[tuple[DataHeader, bytes]] = []
        self.handed_out = 0  # chunks ``get`` returned so far (the highest index plus one)
        self.paced_by: Outbox | None = None
        self._released = False
        self._grown = asyncio.Event()
        self._advanced = asyncio.Event()

    def append(self, header: DataHeader, payload: bytes) -> None:
        """Add the next chunk (header and codec payload)."""
        if len(self.items) >= self.count:
            raise ValueError(f"an outbox of {self.count} chunks is full")
        self.items.append((header, payload))
        self._grown.set()

    def release(self) -> None:
        """This outbox's stream is over (sent, failed or given up): it paces nothing any more."""
        self._released = True
        self._advanced.set()

    async def get(self, index: int) -> tuple[DataHeader, bytes]:
        """Chunk ``index``, once it has been appended (and the pacing outbox is far enough along)."""
        while len(self.items) <= index:
            self._grown.clear()
            await self._grown.wait()
        if self.paced_by is not None:
            await self.paced_by.reached(-(-(index + 1) * self.paced_by.count // self.count))
        if index >= self.handed_out:
            self.handed_out = index + 1
            self._advanced.set()
        return self.items[index]

    async def reached(self, handed_out: int) -> None:
        """Wait until ``handed_out`` chunks were handed out, or the outbox was released."""
        while self.handed_out < handed_out and not self._released:
            self._advanced.clear()
            await self._advanced.wait()
