"""``run_virtual``: the clock jumps to the next timer, so long waits cost nothing and read exactly."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.testing import LoopClock, VirtualTimeLoop, run_virtual


def test_run_virtual_advances_virtual_time_by_what_was_awaited() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        clock = LoopClock(loop, epoch=1_000.0)
        await asyncio.sleep(3600.0)
        await asyncio.wait_for(asyncio.sleep(1.5), timeout=10.0)
        return loop.time(), clock.time()

    loop_time, wall = run_virtual(main())
    assert loop_time == pytest.approx(3601.5)
    assert wall == pytest.approx(1_000.0 + 3601.5)


def test_timers_fire_in_virtual_order() -> None:
    async def main() -> list[str]:
        order: list[str] = []

        async def after(delay: float, name: str) -> None:
            await asyncio.sleep(delay)
            order.append(name)

        await asyncio.gather(after(30.0, "late"), after(0.5, "early"), after(10.0, "middle"))
        return order

    assert run_virtual(main()) == ["early", "middle", "late"]


def test_run_virtual_cancels_what_is_left_and_returns_the_result() -> None:
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1e9)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> str:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(1.0)
        return "done"

    assert run_virtual(main()) == "done"
    assert cancelled == [True]
