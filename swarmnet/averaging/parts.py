"""Our parts of a reduce pass: what this member sends each other reducer of its range (``allreduce.py``).

Each part goes through one outbox per (pass, reducer), filled chunk by chunk as it is encoded and streamed
at once; the results we send a reducer are paced behind our part for it (``Outbox.paced_by``).
"""

from __future__ import annotations

import asyncio

from swarmnet.averaging.background import together
from swarmnet.averaging.contributions import Contributions
from swarmnet.averaging.exchange import RoundExchange
from swarmnet.averaging.link import GroupLink
from swarmnet.averaging.outbox import Outbox
from swarmnet.averaging.vectors import Range, chunk_bounds
from swarmnet.clock import off_loop

__all__ = ["PartSender"]


class PartSender:
    """Encodes and streams our parts of each pass, in chunks of ``chunk`` elements."""

    def __init__(self, contributions: Contributions, link: GroupLink, exchange: RoundExchange, chunk: int) -> None:
        self._contributions, self._link, self._exchange, self._chunk = contributions, link, exchange, chunk
        self._boxes: dict[tuple[int, int], Outbox] = {}  # (pass, reducer) -> our part for it, which paces results

    def open(self, pass_no: int, assignment: dict[int, list[Range]]) -> None:
        """Make the outboxes of our parts of pass ``pass_no``, one per other reducer of ``assignment``."""
        for r, spans in assignment.items():
            if r != self._exchange.me:
                self._boxes[pass_no, r] = Outbox(len(chunk_bounds(spans, self._chunk)))

    def box(self, pass_no: int, reducer: int) -> Outbox | None:
        """Our part of pass ``pass_no`` for ``reducer``, if we send it one."""
        return self._boxes.get((pass_no, reducer))

    async def send(self, pass_no: int, assignment: dict[int, list[Range]], encoded: asyncio.Future[None]) -> None:
        """Stream our part to every other reducer at once, encoding chunk by chunk across them (in turn
        order): every reducer gets its first chunks from everyone early and starts reducing, instead
        of waiting for the senders that encode its part last. ``encoded`` is set once encoding stops."""
        boxes = {r: box for (p, r), box in self._boxes.items() if p == pass_no}
        order = sorted(boxes, key=self._exchange.turn)
        chunks = {r: chunk_bounds(assignment[r], self._chunk) for r in order}
        sends = [asyncio.ensure_future(self._send_one(r, boxes[r])) for r in order]
        try:
            for k in range(max((len(c) for c in chunks.values()), default=0)):
                # Even to a reducer that failed meanwhile: recovery rebuilds our contribution to its range
                # from the whole part as encoded (the error feedback residual was updated for all of it).
                for r in order:
                    if k < len(chunks[r]):
                        # One chunk per hop to the worker: the first goes on the wire after one encode, not N-1.
                        payload = await off_loop(self._contributions.encode_next, pass_no, r, chunks[r][k])
                        self._link.fill(boxes[r], "part", pass_no, [payload])
        finally:
            encoded.set_result(None)
            for box in boxes.values():  # encoding stopped early: results to its peer must not wait for it
                if len(box.items) < box.count:
                    box.release()
        await together(sends)

    async def _send_one(self, reducer: int, box: Outbox) -> None:
        try:
            await self._link.send_outbox(reducer, box)
        finally:
            box.release()
