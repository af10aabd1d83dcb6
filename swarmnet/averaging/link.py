"""The messaging of one group's data phase: chunked streams with resend, unary messages, liveness probes.

Every send has a deadline from the throughput model; a member whose connection fails is recorded
as failed (``failed``), which stops every further send to it and every wait for it. A stream that
breaks for another reason is reopened and resumes after the last acknowledged chunk (receivers
ignore duplicates), up to three attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Collection

from swarmnet.averaging.deadlines import Arrivals, ThroughputModel
from swarmnet.averaging.group import Group
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.messages import DataHeader, Kind, Reply, decode_message, encode_message, method_name
from swarmnet.averaging.outbox import Outbox
from swarmnet.averaging.pacer import Pacer
from swarmnet.errors import RequestTimeout, SwarmnetError, TransportError
from swarmnet.transport.base import Transport

__all__ = ["GroupLink"]

logger = logging.getLogger(__name__)

_ATTEMPTS = 3  # tries per chunked message: a stream can break under load without the peer being gone


class GroupLink:
    """Sends of one member to the others of its group, for one round."""

    def __init__(
        self,
        transport: Transport,
        group: Group,
        inbox: Inbox,
        failed: dict[int, str],
        *,
        weight: float,
        throughput: ThroughputModel,
        largest_chunk: float,
        probe_interval: float,
        pacer: Pacer | None = None,
    ) -> None:
        self.group, self.inbox, self.failed, self.weight = group, inbox, failed, weight
        self._transport, self._throughput = transport, throughput
        self._method = method_name(group.run, "data")
        self._stream_method = method_name(group.run, "stream")
        self._largest, self._probe_interval, self._pacer = largest_chunk, probe_interval, pacer
        self.bytes_sent: Counter[int] = Counter()
        self._last_answer: dict[int, float] = {}  # target -> loop time it last answered us (a chunk or a message)

    async def send_all(
        self, target: int, kind: Kind, pass_no: int, payloads: list[bytes], contributors: Collection[int] = ()
    ) -> None:
        """Send a chunked message over one stream."""
        outbox = Outbox(len(payloads))
        self.fill(outbox, kind, pass_no, payloads, contributors)
        await self.send_outbox(target, outbox)

    def fill(
        self, outbox: Outbox, kind: Kind, pass_no: int, payloads: list[bytes], contributors: Collection[int] = ()
    ) -> None:
        """Append ``payloads`` to ``outbox`` as the chunks of one message from us."""
        for payload in payloads:
            header = DataHeader(
                group_id=self.group.group_id, kind=kind, pass_no=pass_no, chunk=len(outbox.items),
                chunks=outbox.count, weight=self.weight, contributors=tuple(sorted(contributors)),
            )  # fmt: skip
            outbox.append(header, payload)

    async def send_outbox(self, target: int, outbox: Outbox, patience: float = 0.0) -> None:
        """Stream an outbox's chunks over one stream (a stream's flow-control window grows once, not per
        chunk); after a broken stream, resend what was not acknowledged (receivers ignore duplicates).
        ``patience``: extra seconds to wait for each reply, while chunks are still being produced."""
        progress = [0]  # chunks acknowledged so far, across attempts
        for attempt in range(_ATTEMPTS):
            if target in self.failed or progress[0] == outbox.count:
                return
            try:
                await self._stream(target, outbox, progress, patience)
                return
            except TransportError as e:
                self.fail(target, e)
            except SwarmnetError as e:
                retry = attempt + 1 < _ATTEMPTS
                logger.warning("round %s: sending to %s broke (%s)%s", self.group.round_id,
                               self.group.members[target], e, "; retrying" if retry else "")  # fmt: skip

    async def _stream(self, target: int, outbox: Outbox, progress: list[int], patience: float) -> None:
        """Stream chunks from ``progress[0]`` on to ``target``, counting acknowledgements in ``progress[0]``."""

        async def requests() -> AsyncIterator[bytes]:
            for index in range(progress[0], outbox.count):
                message = encode_message(*await outbox.get(index))
                if self._pacer is not None:
                    await self._pacer.take(len(message))
                self.bytes_sent[target] += len(message)
                yield message

        timeout = patience + self._throughput.timeout(self._largest * max(1, len(self.group.members) - 1))
        responses = self._transport.call_stream(self.group.members[target], self._stream_method, requests(),
                                                timeout=timeout)  # fmt: skip
        try:
            async for raw in responses:
                reply, _ = decode_message(raw, Reply)
                self._last_answer[target] = asyncio.get_running_loop().time()
                if not reply.ok:
                    logger.warning("round %s: %s refused a chunk: %s", self.group.round_id,
                                   self.group.members[target], reply.reason)  # fmt: skip
                progress[0] += 1
        finally:
            await responses.aclose()

    def fail(self, target: int, error: Exception) -> None:
        """Record that ``target`` failed: nothing more is sent to it or waited for from it this round."""
        logger.info("round %s: %s failed: %s", self.group.round_id, self.group.members[target], error)
        self.failed[target] = f"{type(error).__name__}: {error}"
        self.inbox.fail(target)

    async def ping(self, target: int) -> bool:
        """Whether ``target`` answers a ping. A ping is there to find a dead connection fast, which fails with a
        transport error; a slow answer is a full link, not a death (the phase's own deadline bounds the wait
        for the peer), so a timeout only returns ``False``."""
        return await self.send(
            target, DataHeader(group_id=self.group.group_id, kind="ping"), b"", fail_on_timeout=False
        )

    async def send(self, target: int, header: DataHeader, payload: bytes, *, fail_on_timeout: bool = True) -> bool:
        """One unary message (tally, ping); whether the member accepted it. ``fail_on_timeout=False``: a
        timeout returns ``False`` without recording the member as failed."""
        if target in self.failed:
            return False
        message = encode_message(header, payload)
        peer = self.group.members[target]
        timeout = self._throughput.timeout(len(message) * max(1, len(self.group.members) - 1))
        first_try = asyncio.get_running_loop().time()
        for attempt in range(_ATTEMPTS):
            try:
                raw = await self._transport.call_unary(peer, self._method, message, timeout=timeout)
                self.bytes_sent[target] += len(message)
                self._last_answer[target] = asyncio.get_running_loop().time()
                reply, _ = decode_message(raw, Reply)
                break
            except RequestTimeout as e:
                if not fail_on_timeout:
                    logger.info("round %s: %s slow to answer our %s", self.group.round_id, peer, header.kind)
                    return False
                # On links full of bulk data a small message can wait seconds behind it, and so can its answer.
                # A peer whose data or acknowledgements kept coming since we first asked (or just before) is
                # alive: ask again (receivers ignore a repeated message).
                heard_window = asyncio.get_running_loop().time() - first_try + timeout
                if attempt + 1 < _ATTEMPTS and self._heard_within(target, heard_window):
                    logger.info("round %s: %s slow to answer our %s; asking again", self.group.round_id, peer,
                                header.kind)  # fmt: skip
                    continue
                self.fail(target, e)
                return False
            except TransportError as e:
                self.fail(target, e)
                return False
            except SwarmnetError as e:
                reply = Reply(ok=False, reason=f"{type(e).__name__}: {e}")
                break
        if not reply.ok:
            logger.warning("round %s: %s refused our %s: %s", self.group.round_id, peer, header.kind, reply.reason)
        return reply.ok

    def _heard_within(self, target: int, seconds: float) -> bool:
        """Whether ``target`` sent us a chunk, acknowledged one of ours or answered a message in the last ``seconds``.

        Acknowledgements count too: a member whose own data to us is done (or held back by its
        reduction) may be silent for seconds while it still takes our results at full speed.
        """
        last = max(self.inbox.last_heard.get(target, -math.inf), self._last_answer.get(target, -math.inf))
        return asyncio.get_running_loop().time() - last <= seconds

    async def wait(self, arrivals: Arrivals, timeout: float, floor: float = 0.0) -> set[int]:
        """``arrivals.wait``, while probing the peers still pending: a dead one is dropped at once."""
        stopped = asyncio.Event()
        prober = asyncio.ensure_future(self._probe(arrivals, stopped))
        try:
            arrived = await arrivals.wait(timeout, floor)
            if late := arrivals.pending:
                # Cut off as stragglers or at the deadline: say so, or a smaller group looks unexplained.
                logger.info("round %s: stopped waiting for %s after %.1f s", self.group.round_id,
                            ", ".join(self.group.members[i] for i in sorted(late)),
                            asyncio.get_running_loop().time() - arrivals.start)  # fmt: skip
            return arrived
        finally:
            # The flag as well as the cancel: a cancellation can be lost inside a call (asyncio.wait_for in
            # Python 3.11 drops one that arrives as its call completes), and a probe that lost it would
            # otherwise loop on, and this round would wait for it forever.
            stopped.set()
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    async def _probe(self, arrivals: Arrivals, stopped: asyncio.Event) -> None:
        # A peer that died after we last talked to it would otherwise be waited for until the deadline.
        interval = self._probe_interval
        while not stopped.is_set():
            await asyncio.sleep(interval)
            for target in sorted(arrivals.pending):
                # A peer whose data is still streaming in is alive: pinging it would only add load.
                if not self._heard_within(target, interval):
                    await self.ping(target)
