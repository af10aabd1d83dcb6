"""``poll_until`` / ``apoll_until``: return the first truthy value; fail after the deadline naming what was awaited."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from swarmnet.testing import apoll_until, poll_until, run_virtual


def test_poll_until_returns_the_first_truthy_value() -> None:
    answers = iter([0, None, "", "found", "later"])
    assert poll_until(lambda: next(answers), timeout=30, interval=0) == "found"


def test_poll_until_sees_a_condition_another_thread_makes_true() -> None:
    done = threading.Event()
    worker = threading.Thread(target=done.set)
    worker.start()
    try:
        assert poll_until(done.is_set, timeout=30, interval=0.01, what="the worker's event") is True
    finally:
        worker.join()


def test_poll_until_fails_after_the_deadline_naming_what_it_waited_for() -> None:
    calls = itertools.count(1)
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the answer to appear"):
        poll_until(lambda: next(calls) and None, timeout=0.05, interval=0.01, what="the answer to appear")
    assert next(calls) >= 2  # it asked before giving up


def test_apoll_until_waits_in_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + 3600.0

        async def ready() -> float | None:
            return loop.time() if loop.time() >= ready_at else None

        return await apoll_until(ready, timeout=7200, interval=60, what="an hour to pass")

    assert run_virtual(main()) == pytest.approx(3600.0)


def test_apoll_until_fails_after_the_virtual_deadline_naming_what_it_waited_for() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()

        async def never() -> bool:
            return False

        with pytest.raises(AssertionError, match="waiting for a group that never forms"):
            await apoll_until(never, timeout=600, interval=1, what="a group that never forms")
        return loop.time()

    assert 600.0 < run_virtual(main()) <= 602.0  # virtual seconds: the deadline, plus one interval at most
