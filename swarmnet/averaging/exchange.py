"""The steps of a round that both modes of ``allreduce.py`` share: whom a member addresses in which order,
how long it waits for a slot's messages, the tally of who contributed, and naming refused contributors.

A failed member (``report.failed``) is neither addressed nor waited for; a refused contribution is named
in ``report.rejected``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from swarmnet.averaging.background import finish
from swarmnet.averaging.deadlines import ThroughputModel
from swarmnet.averaging.group import Group
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.link import GroupLink
from swarmnet.averaging.messages import DataHeader, Kind
from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.report import RoundReport
from swarmnet.averaging.vectors import Range
from swarmnet.clock import off_loop

__all__ = ["RoundExchange"]

logger = logging.getLogger(__name__)


class RoundExchange:
    """Member ``me``'s waits, tallies and turn order in one round of ``group``.

    ``ratio`` is the codec's estimated compression ratio and ``numel`` the vector's length: together they
    size the bytes a wait expects, hence its deadline.
    """

    def __init__(
        self,
        group: Group,
        me: int,
        inbox: Inbox,
        link: GroupLink,
        report: RoundReport,
        throughput: ThroughputModel,
        *,
        ratio: float,
        numel: int,
    ) -> None:
        self.group, self.me, self.report = group, me, report
        self._inbox, self._link, self._throughput = inbox, link, throughput
        self._ratio, self._numel = ratio, numel

    def others(self) -> list[int]:
        """Other live members, in this peer's turn order."""
        others = [i for i in range(len(self.group.members)) if i != self.me and i not in self.report.failed]
        return sorted(others, key=self.turn)

    def turn(self, target: int) -> int:
        """Member i addresses i+1 first, then i+2, ...: staggered, so no reducer is everyone's first."""
        return (target - self.me) % len(self.group.members)

    def wait_for(self, inbound: float) -> tuple[float, float]:
        """(deadline, straggler floor) for receiving ``inbound`` bytes."""
        return self._throughput.timeout(inbound), 1.5 * self._throughput.transfer_time(inbound)

    async def finish(self, sending: asyncio.Future[Any]) -> None:
        """Let background sends end within the shortest phase timeout: they are best effort."""
        await finish(sending, self._throughput.timeout(0))

    def accept(self, kind: Kind, pass_no: int, sender: int, reducer: RangeReducer) -> None:
        """Hand a complete contribution to ``reducer``; name its sender in the report if it is refused."""
        message = self._inbox.get(kind, pass_no, sender)
        reason = "incomplete message" if message is None else reducer.add_payloads(
            sender, message.weight, message.ordered()
        )  # fmt: skip
        if reason is not None:
            self.reject(sender, reason)

    def reject(self, sender: int, reason: str) -> None:
        """Name a refused contributor in the report (once: later chunks are refused for the same cause)."""
        if sender not in self.report.rejected:
            peer = self.group.members[sender]
            logger.warning("round %s: rejected the contribution of %s: %s", self.group.round_id, peer, reason)
            self.report.rejected[sender] = reason

    async def receive(
        self, kind: Kind, pass_no: int, expected: set[int], inbound: float, handle: Callable[[int], None]
    ) -> None:
        """Wait for the messages of a slot (adaptive deadline, straggler cutoff, liveness probes), handing
        each complete one to ``handle`` in a worker thread as soon as it arrives, so decoding overlaps
        with the transfers still going on."""
        arrivals = self._inbox.arrivals(kind, pass_no)
        arrivals.expect(expected, self.report.failed)
        queue = self._inbox.completions(kind, pass_no)
        handled: set[int] = set()

        async def consume() -> None:
            while (sender := await queue.get()) is not None:
                if sender in expected and sender not in handled:
                    handled.add(sender)
                    await off_loop(handle, sender)

        consumer = asyncio.ensure_future(consume())
        try:
            await self._link.wait(arrivals, *self.wait_for(inbound))
        finally:
            queue.put_nowait(None)  # stop after what has arrived: a handler is never cut off midway
            await consumer

    async def tally(
        self, pass_no: int, accepted: list[int] | None, reducers: set[int], *, biggest: dict[int, list[Range]] | None
    ) -> dict[int, tuple[int, ...]]:
        """Tell everyone whom we accepted (if we reduce); return the reducers' tallies that arrived."""
        sends = []
        if accepted is not None:
            header = DataHeader(
                group_id=self.group.group_id, kind="tally", pass_no=pass_no, contributors=tuple(accepted)
            )
            sends = [self._link.send(r, header, b"") for r in self.others()]
        sending = asyncio.gather(*sends)
        arrivals = self._inbox.arrivals("tally", pass_no)
        arrivals.expect(reducers - {self.me}, self.report.failed)
        # Other reducers report when their own reduce-scatter ends, which may be well after ours.
        spans = [sum(hi - lo for lo, hi in s) for s in biggest.values()] if biggest else [self._numel]
        inbound = len(self.group.members) * 4 * self._ratio * max(spans, default=0)
        arrived = await self._link.wait(arrivals, *self.wait_for(inbound))
        await self.finish(sending)
        tallies = {}
        for reducer in arrived:
            message = self._inbox.get("tally", pass_no, reducer)
            if message is not None:
                tallies[reducer] = message.contributors
        return tallies
