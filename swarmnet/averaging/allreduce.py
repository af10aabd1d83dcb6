"""The data phase of one round in a formed group: partitioned reduce, with failures and recovery.

Reduce mode (butterfly, as in hivemind and 1-bit Adam's compressed all-reduce):

1. **reduce-scatter**: the vector is split into one range per member, sized by bandwidth; each
   member sends each reducer its slice of that range (compressed; error feedback at the sender)
   and reduces its own range from what arrives before its adaptive deadline;
2. **tally**: each reducer tells everyone whose contributions it accepted; every member takes the
   intersection, minus reducers that never reported (they died): that is the contributor set, the
   same at every member as long as no further failure happens meanwhile;
3. **all-gather**: each reducer aggregates its range over exactly those contributors (robust rule
   selectable), compresses it once (error feedback at the reducer) and sends the same bytes to all;
4. **amendment**: a reducer streams each result chunk as soon as it is reduced, over whoever had
   sent it; chunks that turn out over other contributors than the tally's (a straggler cut off, a
   sender refused midway) are re-reduced from the parts it holds and sent again (``amend.py``);
5. **recovery**: ranges of reducers that died (or whose results stayed unusable) are split among
   the survivors and reduced again (one more pass over the same contributors), so the result is
   still the average over them.

Sparse all-gather mode (top-k codecs, when cheaper): every member sends its whole sparse vector to
all others, then tally, then every member aggregates everything itself (``allgather.py``).

The steps both modes share (turn order, waits, tally) are in ``exchange.py``; our parts' encoding and
streaming in ``parts.py``; what the round found out in ``report.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import torch

from swarmnet.averaging.allgather import gather_pass, prefers_allgather
from swarmnet.averaging.amend import amend
from swarmnet.averaging.background import together, until_set
from swarmnet.averaging.config import AveragingConfig
from swarmnet.averaging.contributions import Contributions
from swarmnet.averaging.deadlines import ThroughputModel
from swarmnet.averaging.exchange import RoundExchange
from swarmnet.averaging.group import Group, partition, split_spans
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.link import GroupLink
from swarmnet.averaging.messages import DataHeader
from swarmnet.averaging.outbox import Outbox
from swarmnet.averaging.pacer import Pacer
from swarmnet.averaging.parts import PartSender
from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.report import RoundReport
from swarmnet.averaging.results import ResultWriter
from swarmnet.averaging.vectors import Feedback, Range, chunk_bounds, encode_chunk
from swarmnet.clock import off_loop
from swarmnet.compression import Codec
from swarmnet.transport.base import Transport

__all__ = ["GroupRound", "RoundReport"]

logger = logging.getLogger(__name__)


class GroupRound:
    """One member's side of one group's data phase; results are written into ``flat`` in place."""

    def __init__(
        self,
        transport: Transport,
        group: Group,
        flat: torch.Tensor,
        *,
        weight: float,
        codec: Codec,
        feedback: Feedback | None,
        config: AveragingConfig,
        throughput: ThroughputModel,
        pacer: Pacer | None = None,
    ) -> None:
        self.group, self.flat, self.weight, self.codec = group, flat, weight, codec
        self.me = group.index(transport.peer_id)
        self._feedback, self._config, self._throughput = feedback, config, throughput
        self._ratio = codec.estimated_ratio(max(1, flat.numel()))
        self._contributions = Contributions(codec, flat, feedback)
        self._chunk = config.chunk_size(self._ratio)
        max_chunks = len(chunk_bounds([(0, flat.numel())], self._chunk)) + len(group.members)
        self.inbox = Inbox(config.deadlines, max_chunks)
        tolerance = config.result_tolerance if config.aggregation.rule != "mean" else None
        self._results = ResultWriter(codec, flat, self.inbox, self._chunk, group.members, tolerance)
        self.report = RoundReport()
        self._link = GroupLink(
            transport, group, self.inbox, self.report.failed, weight=weight, throughput=throughput,
            largest_chunk=4 * self._ratio * self._chunk, probe_interval=config.deadlines.probe_interval, pacer=pacer,
        )  # fmt: skip
        self._exchange = RoundExchange(
            group, self.me, self.inbox, self._link, self.report, throughput, ratio=self._ratio, numel=flat.numel()
        )
        self._parts = PartSender(self._contributions, self._link, self._exchange, self._chunk)
        self.bytes_sent = self._link.bytes_sent
        self.bytes_received: Counter[int] = Counter()

    def receive(self, sender: int, header: DataHeader, payload: memoryview) -> None:
        """Store a data message from member ``sender`` (``ProtocolError`` if it is malformed)."""
        self.bytes_received[sender] += len(payload)
        self.inbox.put(sender, header, payload)

    async def run(self) -> RoundReport:
        """Run the data phase; never raises for a peer's fault (it is recorded in the report)."""
        members = set(range(len(self.group.members)))
        if prefers_allgather(self.codec, self._config.sparse_mode, len(members), self._ratio, self.flat.numel()):
            self.report.mode = "allgather"
            chunks = chunk_bounds([(0, self.flat.numel())], self._chunk)
            await gather_pass(
                self._exchange, self._link, self.inbox, self._contributions, self._reducer,
                flat=self.flat, chunks=chunks, weight=self.weight,
            )  # fmt: skip
            return self.report
        assignment = {r: [span] for r, span in enumerate(partition(self.flat.numel(), self.group.bandwidths))}
        assignment = {r: spans for r, spans in assignment.items() if spans[0][1] > spans[0][0]}
        contributors, reporters, missing, mismatched = await self._reduce_pass(0, assignment, members)
        self.report.contributors = contributors
        redo = (set(assignment) - reporters) | missing | mismatched
        orphans = [span for r, spans in assignment.items() if r in redo for span in spans]
        # A reducer whose range is redone is no survivor, whether its result went missing or came over
        # the wrong contributors: members disagree about which of the two it was (a result one of them
        # got in time, another cut off), but not about its being redone, so they split alike.
        survivors = sorted(reporters - redo) or sorted(reporters - missing)
        if orphans and survivors:
            # Reducers that died took their parts with them: the survivors reduce those again.
            logger.info("round %s: re-reducing %d orphaned ranges", self.group.round_id, len(orphans))
            again = split_spans(orphans, survivors)
            started = asyncio.get_running_loop().time()
            if self.me in contributors:
                await off_loop(self._contributions.recover, orphans)
            recovered, reporters, missing, mismatched = await self._reduce_pass(1, again, contributors)
            self.report.phase_seconds["recovery"] = asyncio.get_running_loop().time() - started
            lost = {r for r in again if r not in reporters or r in missing or r in mismatched}
            kept = lost | self._results.refused(1)  # a refused range counts among the distrusted ones
            self.report.recovered_elements = sum(hi - lo for r in again if r not in kept for lo, hi in again[r])
            orphans = [span for r in lost for span in again[r]]
            self.report.consistent = recovered == contributors
        # A refused result's range keeps our values too: reducing it again would need every contributor's part,
        # and a lying reducer need not know that it was found out.
        self.report.distrusted = dict(self._results.distrusted)
        self.report.unaveraged_elements = sum(hi - lo for lo, hi in orphans) + self._results.distrusted_elements
        if self.report.unaveraged_elements:
            logger.warning("round %s: %d elements keep their local values", self.group.round_id,
                           self.report.unaveraged_elements)  # fmt: skip
        return self.report

    # -- reduce mode ---------------------------------------------------------------------------

    async def _reduce_pass(
        self, pass_no: int, assignment: dict[int, list[Range]], senders: set[int]
    ) -> tuple[set[int], set[int], set[int], set[int]]:
        """One pipelined reduce-scatter and all-gather, then the tally.

        Returns (contributors, reporting reducers, reducers whose result is missing, reducers whose
        result is over other contributors): the ranges of the last two must be reduced again.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        mine = chunk_bounds(assignment.get(self.me, []), self._chunk)
        if self.me in senders:
            self._parts.open(pass_no, assignment)
        encoded = loop.create_future()
        sends = asyncio.ensure_future(self._parts.send(pass_no, assignment, encoded))
        reducer = self._reducer(mine) if mine else None
        payloads: list[bytes] = []
        tags: list[set[int]] = []
        results: asyncio.Future[None] | None = None
        if reducer is not None:
            if self.me in senders:
                await off_loop(self._add_own, pass_no, mine, reducer)
            payloads, tags, results = await self._reduce_streaming(pass_no, mine, reducer, senders)
        self.report.time_phase(pass_no, "reduce_scatter", started)
        started = loop.time()
        accepted = reducer.accepted if reducer is not None else set()
        reporting = sorted(accepted) if mine else None
        tallies = await self._exchange.tally(pass_no, reporting, set(assignment), biggest=assignment)
        await self._exchange.finish(sends)
        reporters = set(tallies) | ({self.me} if mine else set())
        contributors = set(senders) & (reporters | (senders - set(assignment)))
        for tally in tallies.values():
            contributors &= set(tally)
        if mine:
            contributors &= accepted
        self.report.time_phase(pass_no, "tally", started)
        started = loop.time()
        await encoded  # nothing may overwrite a range while our part of it is still being encoded
        amending = None
        if reducer is not None and contributors and any(tag != contributors for tag in tags):
            amending = await self._amend(pass_no, mine, reducer, payloads, tags, contributors)
        own_ok = reducer is not None and all(tag == contributors for tag in tags)
        # Our own result is decoded while the others' still arrive: it is ready now, theirs may not be.
        keeping = asyncio.ensure_future(off_loop(self._results.keep_own, self.me, mine, payloads)) if own_ok else None
        missing, mismatched = await self._collect_results(pass_no, assignment, reporters, contributors)
        if keeping is not None:
            await keeping
        self._results.refuse_implausible(pass_no, self.me)  # now that every result of the pass is in
        if reducer is not None and not own_ok:
            mismatched.add(self.me)
            self._discard_own_result(mine)
        for sending in (results, amending):
            if sending is not None:
                await self._exchange.finish(sending)
        self.report.time_phase(pass_no, "all_gather", started)
        self.inbox.drop("part", pass_no)
        return contributors, reporters, missing, mismatched

    async def _reduce_streaming(
        self, pass_no: int, mine: list[Range], reducer: RangeReducer, senders: set[int]
    ) -> tuple[list[bytes], list[set[int]], asyncio.Future[None]]:
        """Reduce our chunks one by one, each as soon as every live sender's part of it is in, and stream
        each result to everyone at once: the all-gather overlaps the rest of the reduce-scatter.

        A chunk is reduced over the senders whose part of it arrived; each result carries that set, and
        receivers use a range only if every chunk's set equals the final contributor set (the tally).
        """
        expected = senders - {self.me}
        arrivals = self.inbox.arrivals("part", pass_no)
        arrivals.expect(expected, self.report.failed)
        inbound = len(expected) * 4 * self._ratio * sum(b - a for a, b in mine)
        deadline, floor = self._exchange.wait_for(inbound)
        received_before, started = self.inbox.bytes_received, asyncio.get_running_loop().time()
        waiting = asyncio.ensure_future(self._link.wait(arrivals, deadline, floor))
        outboxes = {r: Outbox(len(mine)) for r in self._exchange.others()}
        for r, box in outboxes.items():
            box.paced_by = self._parts.box(pass_no, r)
        sending = asyncio.ensure_future(
            together([self._link.send_outbox(r, box, deadline) for r, box in outboxes.items()])
        )
        payloads, tags = [], []
        changed = self.inbox.changed("part", pass_no)
        for j, (a, b) in enumerate(mine):
            while True:
                changed.clear()
                self._refuse_miscounted(pass_no, expected, len(mine), reducer)
                refused = reducer.refused
                for sender in refused:
                    arrivals.fail(sender)  # nothing more of it counts: neither wait for it nor reduce it
                given_up = arrivals.failed | refused
                present = {s: c for s in expected - given_up if (c := self.inbox.chunk("part", pass_no, s, j))}
                # Once the wait is over (all in, or the deadline), whoever lacks chunk j is left out of it.
                if expected <= present.keys() | given_up or waiting.done():
                    break
                await until_set(changed, waiting)
            payload, tag = await off_loop(self._reduce_chunk, j, a, b, reducer, present)
            header = DataHeader(group_id=self.group.group_id, kind="result", pass_no=pass_no, chunk=j,
                                chunks=len(mine), weight=self.weight, contributors=tuple(sorted(tag)))  # fmt: skip
            for box in outboxes.values():
                box.append(header, payload)
            payloads.append(payload)
            tags.append(tag)
        await waiting
        self._throughput.observe(
            self.inbox.bytes_received - received_before, asyncio.get_running_loop().time() - started
        )
        return payloads, tags, sending

    def _add_own(self, pass_no: int, mine: list[Range], reducer: RangeReducer) -> None:
        """Our exact contribution to our own range, added to its sums in a worker thread (a full pass over
        the range: on the event loop it would hold up every transfer meanwhile)."""
        reducer.add_values(self.me, self.weight, self._contributions.own_values(pass_no, mine))

    def _refuse_miscounted(self, pass_no: int, senders: set[int], count: int, reducer: RangeReducer) -> None:
        """Refuse senders whose part claims another number of chunks than our range has: a shorter one
        would complete without a chunk we wait for, a longer one never."""
        for sender in senders - reducer.refused:
            declared = self.inbox.declared_chunks("part", pass_no, sender)
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
            return self.codec.encode(self.flat[a:b]), tag
        residual = self._feedback.reduced[a:b] if self._feedback is not None else None
        return encode_chunk(self.codec, reducer.result(j, tag), residual, fresh=False), tag

    async def _amend(
        self,
        pass_no: int,
        mine: list[Range],
        reducer: RangeReducer,
        payloads: list[bytes],
        tags: list[set[int]],
        contributors: set[int],
    ) -> asyncio.Future[None]:
        """Re-reduce our result chunks that are over other contributors and start sending the amendment."""
        residual = self._feedback.reduced if self._feedback is not None else None
        amendment = await off_loop(amend, self.codec, reducer, mine, payloads, tags, contributors, residual)
        amended = sum(b - a for (a, b), patch in zip(mine, amendment, strict=True) if patch)
        logger.info("round %s: amending %d elements of our result", self.group.round_id, amended)
        sends = [self._link.send_all(r, "amend", pass_no, amendment, contributors) for r in self._exchange.others()]
        return asyncio.ensure_future(together(sends))

    def _discard_own_result(self, mine: list[Range]) -> None:
        """Our result is over the wrong contributors: our range is reduced again, and the error our
        residual kept for a result nobody used is dropped with it."""
        if self._feedback is not None:
            for a, b in mine:
                self._feedback.reduced[a:b].zero_()

    async def _collect_results(
        self, pass_no: int, assignment: dict[int, list[Range]], reporters: set[int], contributors: set[int]
    ) -> tuple[set[int], set[int]]:
        """Write the reducers' results into ``flat``; return the reducers whose result is missing, and those
        whose result is over other contributors (both keep our own values for now). A bad result's reducer
        is distrusted instead (``ResultWriter.distrusted``)."""
        verdicts: dict[int, str] = {}

        def apply(reducer: int) -> None:
            if reducer in reporters:
                verdicts[reducer] = self._results.apply_result(pass_no, assignment[reducer], reducer, contributors)

        def size(reducers: set[int]) -> float:
            return 4 * self._ratio * sum(hi - lo for r in reducers for lo, hi in assignment[r])

        await self._exchange.receive("result", pass_no, reporters - {self.me}, size(reporters - {self.me}), apply)
        mismatched = {r for r, verdict in verdicts.items() if verdict == "mismatched"}
        if mismatched:  # their reducers amend what they streamed, once they know the contributors too

            def patch(reducer: int) -> None:
                verdicts[reducer] = self._results.apply_amendment(pass_no, assignment[reducer], reducer, contributors)

            await self._exchange.receive("amend", pass_no, mismatched, size(mismatched), patch)
            mismatched = {r for r, verdict in verdicts.items() if verdict == "mismatched"}
        self.inbox.drop("result", pass_no)
        self.inbox.drop("amend", pass_no)
        self.report.amended_elements = self._results.amended_elements
        used = {r for r, verdict in verdicts.items() if verdict in ("applied", "bad")}
        missing = reporters - {self.me} - used - mismatched
        for reducer in missing:
            if reducer not in self.report.failed:
                logger.warning("round %s: no usable result from reducer %s", self.group.round_id,
                               self.group.members[reducer])  # fmt: skip
        return missing, mismatched

    def _reducer(self, chunks: list[Range]) -> RangeReducer:
        """A reducer of ``chunks`` under this run's aggregation rule and weight bound."""
        return RangeReducer(self.codec, chunks, self._config.aggregation, max_weight=self._config.max_weight)
