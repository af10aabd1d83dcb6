"""Outbox: chunks handed out as they are appended, and results paced by the part to the same peer."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.averaging.messages import DataHeader
from swarmnet.averaging.outbox import Outbox


def _item(i: int) -> tuple[DataHeader, bytes]:
    return DataHeader(group_id="ab" * 8, kind="result", chunk=i, chunks=4), bytes([i])


async def _blocked(awaitable: asyncio.Future[object] | asyncio.Task[object]) -> bool:
    """Whether ``awaitable`` is still pending once the loop has run everything that was ready."""
    for _ in range(5):
        await asyncio.sleep(0)
    return not awaitable.done()


def test_a_chunk_is_handed_out_once_it_is_appended() -> None:
    async def scenario() -> None:
        box = Outbox(2)
        getting = asyncio.ensure_future(box.get(0))
        assert await _blocked(getting)
        box.append(*_item(0))
        assert (await getting)[1] == b"\x00"
        assert box.handed_out == 1
        box.append(*_item(1))
        with pytest.raises(ValueError, match="full"):
            box.append(*_item(2))

    asyncio.run(scenario())


def test_a_paced_outbox_never_gets_ahead_of_its_pacer_in_fraction() -> None:
    async def scenario() -> None:
        part, results = Outbox(8), Outbox(4)
        results.paced_by = part
        for i in range(4):
            results.append(*_item(i))
        for i in range(8):
            part.append(*_item(i))
        first = asyncio.ensure_future(results.get(0))
        assert await _blocked(first)  # 1/4 of the results needs 2/8 of the part handed out
        await part.get(0)
        assert await _blocked(first)
        await part.get(1)
        assert (await first)[0].chunk == 0
        second = asyncio.ensure_future(results.get(1))
        assert await _blocked(second)
        await part.get(3)  # the streamer hands chunks out in order; the highest one counts
        assert (await second)[0].chunk == 1

    asyncio.run(scenario())


def test_a_released_pacer_no_longer_holds_anything_back() -> None:
    async def scenario() -> None:
        part, results = Outbox(8), Outbox(2)
        results.paced_by = part
        results.append(*_item(0))
        results.append(*_item(1))
        waiting = asyncio.ensure_future(results.get(1))
        assert await _blocked(waiting)
        part.release()  # the part's stream failed or ended: results must not wait for it
        assert (await waiting)[0].chunk == 1

    asyncio.run(scenario())
