"""``FaultPlan`` on a ``MemoryNetwork``: messages and DHT operations are dropped and delayed as configured."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.errors import ConfigError, RequestTimeout
from swarmnet.testing import FaultPlan, MemoryNetwork, NetworkStatistics, run_virtual


async def echo(caller: str, request: bytes) -> bytes:
    return request


def test_a_fixed_delay_is_paid_once_each_way() -> None:
    async def main() -> tuple[float, float]:
        network = MemoryNetwork(faults=FaultPlan(min_delay=0.5, max_delay=0.5))
        a, b = network.add_peer(), network.add_peer()
        await b.add_unary_handler("echo", echo)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await a.call_unary(b.peer_id, "echo", b"hi") == b"hi"
        call = loop.time() - started
        started = loop.time()
        assert await a.store("k", b"v", network.clock.time() + 60)
        return call, loop.time() - started

    call, store = run_virtual(main())
    assert call == pytest.approx(1.0)  # request and response
    assert store == pytest.approx(0.5)  # one DHT operation


def test_a_plan_that_drops_everything_leaves_callers_to_their_timeout() -> None:
    async def main() -> tuple[float, bool, NetworkStatistics]:
        network = MemoryNetwork(faults=FaultPlan(drop_rate=1.0))
        a, b = network.add_peer(), network.add_peer()
        await b.add_unary_handler("echo", echo)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimeout):
            await a.call_unary(b.peer_id, "echo", b"hi", timeout=3.0)
        waited = loop.time() - started
        stored = await a.store("k", b"v", network.clock.time() + 60)
        return waited, stored, network.statistics()

    waited, stored, stats = run_virtual(main())
    assert waited == pytest.approx(3.0)
    assert not stored
    assert stats.messages_dropped == stats.messages_sent == 1
    assert stats.dht_ops_dropped == 1


def _lossy_run(seed: int) -> tuple[int, NetworkStatistics]:
    async def main() -> tuple[int, NetworkStatistics]:
        network = MemoryNetwork(faults=FaultPlan(seed=seed, drop_rate=0.3, max_delay=0.1))
        a, b = network.add_peer(), network.add_peer()
        await b.add_unary_handler("echo", echo)
        answered = 0
        for _ in range(400):
            try:
                await a.call_unary(b.peer_id, "echo", b"x", timeout=1.0)
                answered += 1
            except RequestTimeout:
                pass
        return answered, network.statistics()

    return run_virtual(main())


def test_a_lossy_plan_drops_about_its_rate_and_the_same_seed_replays_the_same_run() -> None:
    answered, stats = _lossy_run(seed=3)
    assert 0.2 < stats.messages_dropped / stats.messages_sent < 0.4
    assert 400 * 0.7**2 * 0.8 < answered < 400 * 0.7**2 * 1.2  # both the request and the response must arrive
    assert _lossy_run(seed=3) == (answered, stats)
    assert _lossy_run(seed=4) != (answered, stats)


@pytest.mark.parametrize(
    "plan",
    [FaultPlan(drop_rate=-0.1), FaultPlan(drop_rate=1.5), FaultPlan(min_delay=2.0, max_delay=1.0)],
)
def test_an_impossible_plan_is_refused(plan: FaultPlan) -> None:
    with pytest.raises(ConfigError):
        MemoryNetwork(faults=plan)


def test_the_default_plan_is_a_perfect_network() -> None:
    assert FaultPlan().is_perfect
    assert not FaultPlan(drop_rate=0.01).is_perfect
