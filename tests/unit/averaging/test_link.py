"""GroupLink's unary sends: a slow answer from a peer that is still sending to us, or still taking what we
send, is not its death."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import pytest

from swarmnet.averaging.config import DeadlineConfig
from swarmnet.averaging.deadlines import Arrivals, ThroughputModel
from swarmnet.averaging.group import Group
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.link import GroupLink
from swarmnet.averaging.messages import DataHeader, Reply, encode_message
from swarmnet.errors import RequestTimeout
from swarmnet.testing import run_virtual

GROUP_ID = "ab" * 8


class _SlowOnce:
    """A transport whose first unary call times out (after ``wait`` seconds); later ones are answered."""

    def __init__(self, wait: float = 0.0) -> None:
        self.calls = 0
        self.wait = wait

    async def call_unary(self, peer: str, method: str, message: bytes, *, timeout: float | None = None) -> bytes:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(self.wait)
            raise RequestTimeout(f"no response within {timeout}s")
        return encode_message(Reply(ok=True))

    async def _acks(self, requests: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield encode_message(Reply(ok=True))

    def call_stream(
        self, peer: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Acknowledges every chunk at once."""
        return self._acks(requests)


def _link(transport: Any, deadlines: DeadlineConfig | None = None) -> tuple[GroupLink, Inbox, dict[int, str]]:
    group = Group(GROUP_ID, "t", 0, ("a", "b"), (100.0, 100.0))
    inbox = Inbox(DeadlineConfig(), max_chunks=8)
    failed: dict[int, str] = {}
    throughput = ThroughputModel(deadlines or DeadlineConfig())
    link = GroupLink(
        transport, group, inbox, failed, weight=1.0, throughput=throughput, largest_chunk=1024, probe_interval=0.5
    )
    return link, inbox, failed


def _tally() -> DataHeader:
    return DataHeader(group_id=GROUP_ID, kind="tally", contributors=(0, 1))


@pytest.mark.parametrize(
    "heard", ["its chunk arrived", "it acknowledged ours", "it was heard just before a slow call"]
)
def test_a_timed_out_message_to_a_peer_we_just_heard_from_is_sent_again(heard: str) -> None:
    """Acknowledgements count: a peer whose data to us is done, but which takes ours, is alive. And the answer
    can wait behind the bulk data as long as the question did: a peer heard from just before we asked is alive
    even when the call's timeout ran out with nothing heard since."""

    async def scenario() -> None:
        slow = heard == "it was heard just before a slow call"
        deadlines = DeadlineConfig(base=0.0, minimum=0.05) if slow else None
        transport = _SlowOnce(wait=0.05 if slow else 0.0)  # the slow one times out like a real call: after 0.05 s
        link, inbox, failed = _link(transport, deadlines)
        if heard == "it acknowledged ours":
            await link.send_all(1, "result", 0, [b"r0", b"r1"])
        else:
            inbox.put(1, DataHeader(group_id=GROUP_ID, kind="part", chunk=0, chunks=2), memoryview(b"x"))
        assert await link.send(1, _tally(), b"")
        assert transport.calls == 2
        assert failed == {}

    asyncio.run(scenario())


def test_a_timed_out_message_to_a_silent_peer_marks_it_failed() -> None:
    async def scenario() -> None:
        transport = _SlowOnce()
        link, _, failed = _link(transport)
        assert not await link.send(1, _tally(), b"")
        assert transport.calls == 1
        assert "RequestTimeout" in failed[1]

    asyncio.run(scenario())


def test_a_ping_that_times_out_does_not_fail_the_peer() -> None:
    """Pings find dead connections, which fail with a transport error; a slow answer is only a full link."""

    async def scenario() -> None:
        transport = _SlowOnce()
        link, _, failed = _link(transport)
        assert not await link.ping(1)
        assert transport.calls == 1
        assert failed == {}
        assert await link.ping(1)  # answered the next time

    asyncio.run(scenario())


class _LosesCancellation(_SlowOnce):
    """A transport whose unary calls hang until cancelled, then lose the cancellation and time out (as a call
    under ``asyncio.wait_for`` can in Python 3.11 when the cancellation arrives as it completes)."""

    async def call_unary(self, peer: str, method: str, message: bytes, *, timeout: float | None = None) -> bytes:
        self.calls += 1
        with contextlib.suppress(asyncio.CancelledError):  # lost: the caller carries on as if never cancelled
            await asyncio.sleep(3600.0)
        raise RequestTimeout(f"no response within {timeout}s")


def test_waiting_ends_even_when_a_probe_loses_its_cancellation() -> None:
    """The probe of a silent peer is stopped when the wait ends; a probe whose cancellation a call swallowed must
    stop all the same, or the round waits for it forever."""

    async def scenario() -> None:
        transport = _LosesCancellation()
        link, _, failed = _link(transport)
        arrivals = Arrivals(factor=2.0, grace=0.1)
        arrivals.expect({1})
        arrived = await asyncio.wait_for(link.wait(arrivals, timeout=1.0), timeout=30.0)
        assert arrived == set()
        assert transport.calls >= 1  # the probe was inside a call when the wait ended
        assert failed == {}

    run_virtual(scenario())
