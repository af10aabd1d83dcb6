"""Our own range of a reduce pass (``allreduce.py``): reduce each chunk as soon as the senders' parts of it are
in, stream each result to everyone at once, and amend the chunks that turn out over the wrong contributors.

The reducer's error feedback lives here: every result chunk is encoded with the residual its earlier
aggregates left behind (``ErrorFeedback.encode_range`` on the schema's reducer key), and a result nobody
uses gives its residual up.
"""

from __future__ import annotations

import asyncio
import logging

import torch

from swarmnet.averaging.amend import amend
from swarmnet.averaging.background import together, until_set
from swarmnet.averaging.deadlines import ThroughputModel
from swarmnet.averaging.exchange import RoundExchange
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.link import GroupLink
from swarmnet.averaging.messages import DataHeader
from swarmnet.averaging.outbox import Outbox
from swarmnet.averaging.parts import PartSender
from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.vectors import Range, SchemaFeedback
from swarmnet.clock import off_loop
from swarmnet.compression import Codec

__all__ = ["OwnRange", "Streamed"]

logger = logging.getLogger(__name__)

# What streaming our range produced: the result payloads, the members each chunk is over, and the sends.
Streamed = tuple[list[bytes], list[set[int]], asyncio.Future[None]]


class OwnRange:
    """Reduces and streams this member's range of each pass of one round (``flat`` is the round's vector)."""

    def __init__(
        self,
        exchange: RoundExchange,
        link: GroupLink,
        inbox: Inbox,
        parts: PartSender,
        throughput: ThroughputModel,
        *,
        codec: Codec,
        flat: torch.Tensor,
        weight: float,
        feedback: SchemaFeedback | None,
        ratio: float,
    ) -> None:
        self._exchange, self._link, self._inbox, self._parts = exchange, link, inbox, parts
        self._throughput, self._codec, self._flat, self._weight = throughput, codec, flat, weight
        self._feedback, self._ratio = feedback, ratio

    async def stream(self, pass_no: int, mine: list[Range], reducer: RangeReducer, senders: set[int]) -> Streamed:
        """Reduce our chunks one by one, each as soon as every live sender's part of it is in, and stream
        each result to everyone at once: the all-gather overlaps the rest of the reduce-scatter.

        A chunk is reduced over the senders whose part of it arrived; each result carries that set, and
        receivers use a range only if every chunk's set equals the final contributor set (the tally).
        """
        me, report = self._exchange.me, self._exchange.report
        expected = senders - {me}
        arrivals = self._inbox.arrivals("part", pass_no)
        arrivals.expect(expected, report.failed)
        inbound = len(expected) * 4 * self._ratio * sum(b - a for a, b in mine)
        deadline, floor = self._exchange.wait_for(inbound)
        received_before, started = self._inbox.bytes_received, asyncio.get_running_loop().time()
        waiting = asyncio.ensure_future(self._link.wait(arrivals, deadline, floor))
        outboxes = {r: Outbox(len(mine)) for r in self._exchange.others()}
        for r, box in outboxes.items():
            box.paced_by = self._parts.box(pass_no, r)
        sending = asyncio.ensure_future(
            together([self._link.send_outbox(r, box, deadline) for r, box in outboxes.items()])
        )
        payloads, tags = [], []
        changed = self._inbox.changed("part", pass_no)
        for j, (a, b) in enumerate(mine):
            while True:
                changed.clear()
                self._refuse_miscounted(pass_no, expected, len(mine), reducer)
                refused = reducer.refused
                for sender in refused:
                    arrivals.fail(sender)  # nothing more of it counts: neither wait for it nor reduce it
                given_up = arrivals.failed | refused
                present = {s: c for s in expected - given_up if (c := self._inbox.chunk("part", pass_no, s, j))}
                # Once the wait is over (all in, or the deadline), whoever lacks chunk j is left out of it.
                if expected <= present.keys() | given_up or waiting.done():
                    break
                await until_set(changed, waiting)
            payload, tag = await off_loop(self._reduce_chunk, j, a, b, reducer, present)
            header = DataHeader(group_id=self._exchange.group.group_id, kind="result", pass_no=pass_no, chunk=j,
                                chunks=len(mine), weight=self._weight, contributors=tuple(sorted(tag)))  # fmt: skip
            for box in outboxes.values():
                box.append(header, payload)
            payloads.append(payload)
            tags.append(tag)
        await waiting
        elapsed = asyncio.get_running_loop().time() - started
        self._throughput.observe(self._inbox.bytes_received - received_before, elapsed)
        return payloads, tags, sending

    async def amend(
        self,
        pass_no: int,
        mine: list[Range],
        reducer: RangeReducer,
        streamed: tuple[list[bytes], list[set[int]]],
        contributors: set[int],
    ) -> asyncio.Future[None]:
        """Re-reduce our streamed result chunks that are over other contributors and start sending the
        amendment (``streamed``'s payloads and tags are updated in place)."""
        payloads, tags = streamed
        amendment = await off_loop(amend, self._codec, reducer, mine, payloads, tags, contributors, self._feedback)
        amended = sum(b - a for (a, b), patch in zip(mine, amendment, strict=True) if patch)
        logger.info("round %s: amending %d elements of our result", self._exchange.group.round_id, amended)
        others = self._exchange.others()
        return asyncio.ensure_future(
            together([self._link.send_all(r, "amend", pass_no, amendment, contributors) for r in others])
        )

    def discard(self, mine: list[Range]) -> None:
        """Our result is over the wrong contributors: our range is reduced again, and the error our residual
        kept for a result nobody used is dropped with it."""
        fb = self._feedback
        if fb is not None:
            for a, b in mine:
                fb.store.clear_range(fb.reduced, fb.numel, a, b)

    def _refuse_miscounted(self, pass_no: int, senders: set[int], count: int, reducer: RangeReducer) -> None:
        """Refuse senders whose part claims another number of chunks than our range has: a shorter one
        would complete without a chunk we wait for, a longer one never."""
        for sender in senders - reducer.refused:
            declared = self._inbox.declared_chunks("part", pass_no, sender)
            if declared is not None and declared != count:
                reason = f"sent a part of {declared} chunks, expected {count}"
                self._exchange.reject(sender, reducer.refuse(sender, reason))

    def _reduce_chunk(
        self, j: int, a: int, b: int, reducer: RangeReducer, present: dict[int, tuple[float, memoryview]]
    ) -> tuple[bytes, set[int]]:
        """Add the parts of chunk ``j`` that arrived, aggregate it and encode the result (error feedback
        at the reducer); returns the payload and the members it is over."""
        for sender in sorted(present):
            weight, payload = present[sender]
            if (reason := reducer.add_chunk(sender, weight, j, payload)) is not None:
                self._exchange.reject(sender, reason)
        tag = reducer.members(j)
        if not tag:  # nobody left to average: keep our own values for this range
            return self._codec.encode(self._flat[a:b]), tag
        result, fb = reducer.result(j, tag), self._feedback
        if fb is None:
            return self._codec.encode(result), tag
        return fb.store.encode_range(fb.reduced, fb.numel, a, result, self._codec), tag
