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
streaming in ``parts.py`` (the send side); reducing and streaming our own range in ``own_range.py`` (the
reduce side); the others' results and the books in ``collect.py``; what the round found out in ``report.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import torch

from swarmnet.averaging.allgather import gather_pass, prefers_allgather
from swarmnet.averaging.collect import ResultCollector
from swarmnet.averaging.config import AveragingConfig
from swarmnet.averaging.contributions import Contributions
from swarmnet.averaging.deadlines import ThroughputModel
from swarmnet.averaging.exchange import RoundExchange
from swarmnet.averaging.group import Group, partition, split_spans
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.link import GroupLink
from swarmnet.averaging.messages import DataHeader
from swarmnet.averaging.own_range import OwnRange
from swarmnet.averaging.pacer import Pacer
from swarmnet.averaging.parts import PartSender
from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.report import RoundReport
from swarmnet.averaging.results import ResultWriter
from swarmnet.averaging.vectors import Range, SchemaFeedback, chunk_bounds
from swarmnet.clock import off_loop
from swarmnet.compression import Codec
from swarmnet.transport.base import Transport

__all__ = ["GroupRound", "RoundReport"]

logger = logging.getLogger(__name__)

Assignment = dict[int, list[Range]]  # reducer -> the spans it reduces


class GroupRound:
    """One member's side of one group's data phase; results are written into ``flat`` in place.

    The send side is ``PartSender`` over ``Contributions``, the reduce side ``OwnRange``, the results and
    books ``ResultCollector``; this class wires them up and runs the passes.
    """

    def __init__(
        self,
        transport: Transport,
        group: Group,
        flat: torch.Tensor,
        *,
        weight: float,
        codec: Codec,
        feedback: SchemaFeedback | None,
        config: AveragingConfig,
        throughput: ThroughputModel,
        pacer: Pacer | None = None,
    ) -> None:
        self.group, self.flat, self.weight, self.codec, self._config = group, flat, weight, codec, config
        me = group.index(transport.peer_id)
        ratio = codec.estimated_ratio(max(1, flat.numel()))
        self._chunk = config.chunk_size(ratio)
        max_chunks = len(chunk_bounds([(0, flat.numel())], self._chunk)) + len(group.members)
        self.inbox = Inbox(config.deadlines, max_chunks)
        self.report = RoundReport()
        self._link = GroupLink(
            transport, group, self.inbox, self.report.failed, weight=weight, throughput=throughput,
            largest_chunk=4 * ratio * self._chunk, probe_interval=config.deadlines.probe_interval, pacer=pacer,
        )  # fmt: skip
        self._exchange = RoundExchange(
            group, me, self.inbox, self._link, self.report, throughput, ratio=ratio, numel=flat.numel()
        )
        self._contributions = Contributions(codec, flat, feedback)
        self._parts = PartSender(self._contributions, self._link, self._exchange, self._chunk)
        self._own = OwnRange(
            self._exchange, self._link, self.inbox, self._parts, throughput,
            codec=codec, flat=flat, weight=weight, feedback=feedback, ratio=ratio,
        )  # fmt: skip
        tolerance = config.result_tolerance if config.aggregation.rule != "mean" else None
        results = ResultWriter(codec, flat, self.inbox, self._chunk, group.members, tolerance)
        self._collector = ResultCollector(self._exchange, self.inbox, results, ratio=ratio)
        self.bytes_received: Counter[int] = Counter()

    @property
    def bytes_sent(self) -> Counter[int]:
        """Bytes sent to each member so far, payloads and headers."""
        return self._link.bytes_sent

    def receive(self, sender: int, header: DataHeader, payload: memoryview) -> None:
        """Store a data message from member ``sender`` (``ProtocolError`` if it is malformed)."""
        self.bytes_received[sender] += len(payload)
        self.inbox.put(sender, header, payload)

    async def run(self) -> RoundReport:
        """Run the data phase; never raises for a peer's fault (it is recorded in the report)."""
        members = set(range(len(self.group.members)))
        ratio = self.codec.estimated_ratio(max(1, self.flat.numel()))
        if prefers_allgather(self.codec, self._config.sparse_mode, len(members), ratio, self.flat.numel()):
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
            orphans = await self._recover(orphans, survivors, contributors)
        return self._collector.close(orphans)

    async def _recover(self, orphans: list[Range], survivors: list[int], contributors: set[int]) -> list[Range]:
        """Reducers that died took their parts with them: the survivors reduce those ranges again, over the
        same contributors. Returns the ranges still not averaged."""
        logger.info("round %s: re-reducing %d orphaned ranges", self.group.round_id, len(orphans))
        again = split_spans(orphans, survivors)
        started = asyncio.get_running_loop().time()
        if self._exchange.me in contributors:
            await off_loop(self._contributions.recover, orphans)
        recovered, reporters, missing, mismatched = await self._reduce_pass(1, again, contributors)
        self.report.phase_seconds["recovery"] = asyncio.get_running_loop().time() - started
        lost = {r for r in again if r not in reporters or r in missing or r in mismatched}
        self._collector.count_recovery(again, lost)
        self.report.consistent = recovered == contributors
        return [span for r in lost for span in again[r]]

    async def _reduce_pass(
        self, pass_no: int, assignment: Assignment, senders: set[int]
    ) -> tuple[set[int], set[int], set[int], set[int]]:
        """One pipelined reduce-scatter and all-gather, then the tally.

        Returns (contributors, reporting reducers, reducers whose result is missing, reducers whose
        result is over other contributors): the ranges of the last two must be reduced again.
        """
        loop, me = asyncio.get_running_loop(), self._exchange.me
        started = loop.time()
        mine = chunk_bounds(assignment.get(me, []), self._chunk)
        if me in senders:
            self._parts.open(pass_no, assignment)
        encoded = loop.create_future()
        sends = asyncio.ensure_future(self._parts.send(pass_no, assignment, encoded))
        reducer = self._reducer(mine) if mine else None
        payloads: list[bytes] = []
        tags: list[set[int]] = []
        results: asyncio.Future[None] | None = None
        if reducer is not None:
            if me in senders:
                await off_loop(self._add_own, pass_no, mine, reducer)
            payloads, tags, results = await self._own.stream(pass_no, mine, reducer, senders)
        self.report.time_phase(pass_no, "reduce_scatter", started)
        started = loop.time()
        contributors, reporters = await self._tally(pass_no, assignment, senders, reducer)
        await self._exchange.finish(sends)
        self.report.time_phase(pass_no, "tally", started)
        started = loop.time()
        await encoded  # nothing may overwrite a range while our part of it is still being encoded
        amending = None
        if reducer is not None and contributors and any(tag != contributors for tag in tags):
            amending = await self._own.amend(pass_no, mine, reducer, (payloads, tags), contributors)
        own_ok = reducer is not None and all(tag == contributors for tag in tags)
        # Our own result is decoded while the others' still arrive: it is ready now, theirs may not be.
        writer = self._collector.results
        keeping = asyncio.ensure_future(off_loop(writer.keep_own, me, mine, payloads)) if own_ok else None
        missing, mismatched = await self._collector.collect(pass_no, assignment, reporters, contributors)
        if keeping is not None:
            await keeping
        writer.refuse_implausible(pass_no, me)  # now that every result of the pass is in
        if reducer is not None and not own_ok:
            mismatched.add(me)
            self._own.discard(mine)
        for sending in (results, amending):
            if sending is not None:
                await self._exchange.finish(sending)
        self.report.time_phase(pass_no, "all_gather", started)
        self.inbox.drop("part", pass_no)
        return contributors, reporters, missing, mismatched

    async def _tally(
        self, pass_no: int, assignment: Assignment, senders: set[int], reducer: RangeReducer | None
    ) -> tuple[set[int], set[int]]:
        """Exchange tallies; return the contributors (whom every reporting reducer accepted) and the reporters."""
        me = self._exchange.me
        accepted = reducer.accepted if reducer is not None else set()
        reporting = sorted(accepted) if reducer is not None else None
        tallies = await self._exchange.tally(pass_no, reporting, set(assignment), biggest=assignment)
        reporters = set(tallies) | ({me} if reducer is not None else set())
        contributors = set(senders) & (reporters | (senders - set(assignment)))
        for tally in tallies.values():
            contributors &= set(tally)
        if reducer is not None:
            contributors &= accepted
        return contributors, reporters

    def _add_own(self, pass_no: int, mine: list[Range], reducer: RangeReducer) -> None:
        """Our exact contribution to our own range, added to its sums in a worker thread (a full pass over
        the range: on the event loop it would hold up every transfer meanwhile)."""
        reducer.add_values(self._exchange.me, self.weight, self._contributions.own_values(pass_no, mine))

    def _reducer(self, chunks: list[Range]) -> RangeReducer:
        """A reducer of ``chunks`` under this run's aggregation rule and weight bound."""
        return RangeReducer(self.codec, chunks, self._config.aggregation, max_weight=self._config.max_weight)
