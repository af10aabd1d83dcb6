"""``MemoryNetwork`` / ``MemoryTransport``: the transport contract under virtual time, plus the
simulation features (faults, kills, partitions, determinism, scale)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmnet.clock import run_virtual
from swarmnet.errors import ConfigError, PeerUnreachable, RemotePeerError, RequestTimeout, TransportClosed
from swarmnet.transport.base import StoredValue, Transport, TransportLimits
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport, NetworkStatistics
from swarmnet.transport.memory.dht import MemoryDHT

from .contract import Scenario, TransportContract

T = TypeVar("T")

# Small message limit so the oversized-request test allocates 1 MiB, not 64.
LIMITS = TransportLimits(max_message_bytes=1 << 20, max_value_bytes=1024, default_timeout=5.0)


def virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` under virtual time and check it left no task behind."""

    async def checked() -> T:
        result = await main
        await asyncio.sleep(0)  # let cancelled tasks finish
        leftover = asyncio.all_tasks() - {asyncio.current_task()}
        assert not leftover, f"tasks left running: {leftover}"
        return result

    return run_virtual(checked())


async def echo(caller: str, request: bytes) -> bytes:
    return request


async def stay_forever(caller: str, request: bytes) -> bytes:
    await asyncio.Event().wait()
    raise AssertionError("never set")


async def upper_stream(caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request.upper()


async def items(*values: bytes) -> AsyncIterator[bytes]:
    for value in values:
        yield value


class TestMemoryContract(TransportContract):
    """The transport contract on a perfect in-memory network."""

    __test__ = True
    faults = FaultPlan()

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            network = MemoryNetwork(faults=self.faults, limits=LIMITS)
            a, b = network.add_peer(), network.add_peer()
            try:
                await scenario(a, b)
            finally:
                await a.shutdown()
                await b.shutdown()

        virtual(main())


class TestMemoryContractWithDelays(TestMemoryContract):
    """The same contract when every message and DHT operation takes 10-100 ms."""

    faults = FaultPlan(seed=3, min_delay=0.01, max_delay=0.1)


# -- DHT ---------------------------------------------------------------------------------------


def test_dht_replacement_rules_follow_hivemind() -> None:
    dht = MemoryDHT(max_value_bytes=16)
    assert dht.store("k", b"plain", 10.0, None, now=0.0)
    # A subkey replaces a plain value only if it expires later.
    assert not dht.store("k", b"sub", 10.0, "s", now=0.0)
    assert dht.store("k", b"sub", 11.0, "s", now=0.0)
    assert dht.get("k", now=0.0) == {"s": StoredValue(b"sub", 11.0)}
    assert dht.store("k", b"sub2", 20.0, "t", now=0.0)
    # A plain value replaces a dictionary only if it outlives every subkey.
    assert not dht.store("k", b"plain", 15.0, None, now=0.0)
    assert dht.store("k", b"plain", 21.0, None, now=0.0)
    assert dht.get("k", now=0.0) == {None: StoredValue(b"plain", 21.0)}
    # Past or present expiry, and oversized values, are refused.
    assert not dht.store("j", b"x", 5.0, None, now=5.0)
    assert not dht.store("j", bytes(17), 50.0, None, now=5.0)
    assert dht.store("j", bytes(16), 50.0, None, now=5.0)


def test_dht_sweeps_expired_entries() -> None:
    dht = MemoryDHT(max_value_bytes=16)
    dht.store("plain", b"x", 1.0, None, now=0.0)
    dht.store("dict", b"x", 1.0, "early", now=0.0)
    dht.store("dict", b"y", 3.0, "late", now=0.0)
    dht.store("renewed", b"old", 1.0, None, now=0.0)
    dht.store("renewed", b"new", 3.0, None, now=0.5)
    assert dht.get("dict", now=2.0) == {"late": StoredValue(b"y", 3.0)}
    assert dht.get("renewed", now=2.0) == {None: StoredValue(b"new", 3.0)}
    assert len(dht) == 2  # "plain" is gone from memory, not just hidden
    dht.sweep(now=3.0)
    assert len(dht) == 0


_OPERATION = st.tuples(
    st.sampled_from([0.0, 0.5, 1.0, 2.5]),  # how far time moves before the operation
    st.sampled_from(["a", "b"]),  # key
    st.one_of(st.none(), st.sampled_from(["x", "y"])),  # subkey, or None for a plain value; or a get
    st.sampled_from([-0.5, 0.0, 0.5, 1.0, 2.0, 3.0]),  # expiry relative to now (ties on purpose)
    st.booleans(),  # get instead of store
)


@given(st.lists(_OPERATION, max_size=40))
def test_dht_matches_a_naive_model(operations: list[tuple[float, str, str | None, float, bool]]) -> None:
    """The swept, heap-based table answers exactly like a table that keeps everything forever."""
    dht = MemoryDHT(max_value_bytes=16)
    model: dict[str, dict[str | None, StoredValue]] = {}  # a plain value sits under subkey None
    now = 0.0
    for step, (advance, key, subkey, ttl, is_get) in enumerate(operations):
        now += advance
        if is_get:
            expected = {sub: v for sub, v in model.get(key, {}).items() if v.expires_at > now}
            assert dht.get(key, now) == expected
            continue
        value, expires_at = b"%d" % step, now + ttl
        entries = model.setdefault(key, {})
        is_plain = None in entries
        if subkey is None or is_plain:  # replacing the whole key: beat its latest expiry
            previous = max((v.expires_at for v in entries.values()), default=float("-inf"))
        else:
            previous = entries[subkey].expires_at if subkey in entries else float("-inf")
        accepted = expires_at > now and expires_at > previous
        assert dht.store(key, value, expires_at, subkey, now) == accepted
        if accepted:
            if subkey is None or is_plain:
                model[key] = {subkey: StoredValue(value, expires_at)}
            else:
                entries[subkey] = StoredValue(value, expires_at)


def test_oversized_dht_value_is_refused() -> None:
    async def main() -> None:
        network = MemoryNetwork(limits=LIMITS)
        peer = network.add_peer()
        expires_at = peer.clock.time() + 60
        assert not await peer.store("big", bytes(LIMITS.max_value_bytes + 1), expires_at)
        assert await peer.get("big") == {}
        assert await peer.store("big", bytes(LIMITS.max_value_bytes), expires_at)
        await peer.shutdown()

    virtual(main())


# -- faults ------------------------------------------------------------------------------------


def test_fault_plan_validation() -> None:
    FaultPlan(drop_rate=1.0, min_delay=0.5, max_delay=0.5).validate()
    for bad in (
        FaultPlan(drop_rate=-0.1),
        FaultPlan(drop_rate=1.5),
        FaultPlan(drop_rate=float("nan")),
        FaultPlan(min_delay=-1.0),
        FaultPlan(min_delay=2.0, max_delay=1.0),
        FaultPlan(max_delay=float("inf")),
    ):
        with pytest.raises(ConfigError):
            bad.validate()
    with pytest.raises(ConfigError):
        MemoryNetwork(faults=FaultPlan(drop_rate=2.0))


def test_total_loss_times_out_in_virtual_time() -> None:
    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(drop_rate=1.0), limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()
        await b.add_unary_handler("echo", echo)
        await b.add_stream_handler("upper", upper_stream)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimeout):
            await a.call_unary(b.peer_id, "echo", b"x", timeout=7.0)
        assert loop.time() - started == pytest.approx(7.0)
        started = loop.time()
        with pytest.raises(RequestTimeout):
            async for _ in a.call_stream(b.peer_id, "upper", items(b"x"), timeout=3.0):
                pass
        assert loop.time() - started == pytest.approx(3.0)
        assert not await a.store("k", b"v", a.clock.time() + 60)
        assert await a.get("k") == {}
        stats = network.statistics()
        assert stats.messages_dropped == stats.messages_sent == 2
        assert stats.dht_ops_dropped == 2
        await a.shutdown()
        await b.shutdown()

    wall = time.perf_counter()
    virtual(main())
    assert time.perf_counter() - wall < 1.0


def test_delays_per_hop_are_within_bounds() -> None:
    low, high = 0.05, 0.2

    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(seed=7, min_delay=low, max_delay=high), limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []

        async def stamp(caller: str, request: bytes) -> bytes:
            arrivals.append(loop.time())
            return request

        await b.add_unary_handler("stamp", stamp)
        hops: list[float] = []
        for _ in range(30):
            sent = loop.time()
            await a.call_unary(b.peer_id, "stamp", b"x")
            hops += [arrivals[-1] - sent, loop.time() - arrivals[-1]]
            started = loop.time()
            await a.store("k", b"v", a.clock.time() + 60)
            hops.append(loop.time() - started)
        assert all(low - 1e-9 <= hop <= high + 1e-9 for hop in hops), hops
        assert max(hops) - min(hops) > (high - low) / 2  # actually spread, not constant
        await a.shutdown()
        await b.shutdown()

    virtual(main())


def test_stream_items_keep_order_and_pipeline_over_a_slow_link() -> None:
    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(seed=1, min_delay=0.01, max_delay=0.5), limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()
        await b.add_stream_handler("upper", upper_stream)
        loop = asyncio.get_running_loop()
        sent = [f"item-{i}".encode() for i in range(200)]
        started = loop.time()
        received = [item async for item in a.call_stream(b.peer_id, "upper", items(*sent))]
        assert received == [item.upper() for item in sent]
        # Three latencies (open, request, response), not one per item.
        assert loop.time() - started <= 3 * 0.5 + 1e-9
        await a.shutdown()
        await b.shutdown()

    virtual(main())


def _workload(seed: int) -> tuple[list[tuple[Any, ...]], NetworkStatistics]:
    """A randomized mix of calls, streams, stores and gets on a lossy, slow network."""
    outcomes: list[tuple[Any, ...]] = []

    async def main() -> NetworkStatistics:
        faults = FaultPlan(seed=seed, drop_rate=0.2, min_delay=0.001, max_delay=0.3)
        network = MemoryNetwork(faults=faults, limits=LIMITS)
        peers = [network.add_peer() for _ in range(12)]
        for peer in peers:
            await peer.add_unary_handler("echo", echo)
            await peer.add_stream_handler("upper", upper_stream)
        loop = asyncio.get_running_loop()
        plan = random.Random(1234)  # the workload itself is fixed; only the fault seed varies

        async def act(index: int, peer: MemoryTransport) -> None:
            for step in range(8):
                if index == 0 and step == 2:
                    network.kill(peers[-1].peer_id)  # a death mid-run is part of the replay too
                target = peers[plan.randrange(len(peers))].peer_id
                kind = plan.choice(["call", "stream", "store", "get"])
                result: Any
                try:
                    if kind == "call":
                        result = await peer.call_unary(target, "echo", b"%d" % step, timeout=1.0)
                    elif kind == "stream":
                        stream = peer.call_stream(target, "upper", items(b"a", b"b"), timeout=1.0)
                        result = tuple([item async for item in stream])
                    elif kind == "store":
                        result = await peer.store("shared", b"%d" % step, peer.clock.time() + 5, subkey=peer.peer_id)
                    else:
                        result = tuple(sorted(str(subkey) for subkey in await peer.get("shared")))
                except (RequestTimeout, PeerUnreachable, TransportClosed) as error:
                    result = type(error).__name__
                outcomes.append((index, step, kind, result, round(loop.time(), 9)))

        await asyncio.gather(*(act(i, peer) for i, peer in enumerate(peers)))
        for peer in peers:
            await peer.shutdown()
        return network.statistics()

    stats = virtual(main())
    return outcomes, stats


def test_same_seed_same_run_different_seed_different_run() -> None:
    first, first_stats = _workload(seed=11)
    second, second_stats = _workload(seed=11)
    assert first == second
    assert first_stats == second_stats
    assert first_stats.messages_dropped > 0
    assert first_stats.dht_ops_dropped > 0
    assert {outcome[3] for outcome in first} >= {"RequestTimeout", "PeerUnreachable", "TransportClosed", True, False}
    other, other_stats = _workload(seed=12)
    assert other != first
    assert other_stats != first_stats


# -- kill, shutdown, partition -----------------------------------------------------------------


def test_killed_peer_is_unreachable_but_its_values_live_until_expiry() -> None:
    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(min_delay=0.25, max_delay=0.25), limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()
        await b.add_unary_handler("echo", echo)
        assert await b.store("mine", b"b's value", b.clock.time() + 10)
        network.kill(b.peer_id)
        network.kill(b.peer_id)  # already dead: nothing to do
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PeerUnreachable):
            await a.call_unary(b.peer_id, "echo", b"x")
        assert loop.time() - started == pytest.approx(0.25)  # noticed after the hop, like a refused connection
        with pytest.raises(TransportClosed):
            await b.store("mine", b"again", b.clock.time() + 60)
        with pytest.raises(TransportClosed):
            await b.get("mine")
        with pytest.raises(TransportClosed):
            await b.call_unary(a.peer_id, "echo", b"x")
        assert (await a.get("mine"))[None].value == b"b's value"
        await asyncio.sleep(10)
        assert await a.get("mine") == {}
        assert network.statistics().live_peers == 1
        assert network.live_peer_ids() == [a.peer_id]
        # The same id may come back, as a restarted process would.
        reborn = network.add_peer(b.peer_id)
        await reborn.add_unary_handler("echo", echo)
        assert await a.call_unary(b.peer_id, "echo", b"back") == b"back"
        with pytest.raises(KeyError):
            network.kill("mem-never-existed")
        with pytest.raises(ConfigError):
            network.add_peer(a.peer_id)
        for peer in (a, b, reborn):
            await peer.shutdown()

    virtual(main())


def test_kill_or_shutdown_during_a_call_cancels_the_handler() -> None:
    async def main() -> None:
        network = MemoryNetwork(limits=LIMITS)
        a, b, c = network.add_peer(), network.add_peer(), network.add_peer()
        cancelled: list[str] = []

        async def hang(caller: str, request: bytes) -> bytes:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(caller)
                raise
            raise AssertionError("never set")

        async def endless(caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            while True:
                yield b"tick"
                await asyncio.sleep(1.0)

        await b.add_unary_handler("hang", hang)
        await c.add_unary_handler("hang", hang)
        await c.add_stream_handler("endless", endless)
        loop = asyncio.get_running_loop()
        call = asyncio.create_task(a.call_unary(b.peer_id, "hang", b"x"))
        loop.call_later(1.0, network.kill, b.peer_id)
        with pytest.raises(PeerUnreachable):
            await call
        assert loop.time() == pytest.approx(1.0)

        call = asyncio.create_task(a.call_unary(c.peer_id, "hang", b"x"))
        stream = a.call_stream(c.peer_id, "endless", items())
        assert await anext(stream) == b"tick"
        await asyncio.sleep(0.5)
        await c.shutdown()
        with pytest.raises(PeerUnreachable):
            await call
        with pytest.raises(PeerUnreachable):
            await anext(stream)
        assert cancelled == [a.peer_id, a.peer_id]
        await a.shutdown()

    virtual(main())


def test_consumer_stopping_a_stream_early_cleans_up_both_sides() -> None:
    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(min_delay=0.01, max_delay=0.02), limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()
        finished: list[bool] = []

        async def counter(caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            try:
                for i in range(1_000_000):
                    yield b"%d" % i
                    await asyncio.sleep(0.001)
            finally:
                finished.append(True)

        async def forever() -> AsyncIterator[bytes]:
            while True:
                yield b"request"
                await asyncio.sleep(0.5)

        await b.add_stream_handler("counter", counter)
        stream = a.call_stream(b.peer_id, "counter", forever())
        assert [await anext(stream) for _ in range(3)] == [b"0", b"1", b"2"]
        await stream.aclose()
        assert finished == [True]
        await a.shutdown()
        await b.shutdown()

    virtual(main())  # also checks that no pump or handler task is left behind


def test_closing_a_peer_fails_its_own_open_streams() -> None:
    async def main() -> None:
        network = MemoryNetwork(limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()

        async def silent(caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            await asyncio.Event().wait()
            yield b"never"

        await b.add_stream_handler("silent", silent)
        stream = a.call_stream(b.peer_id, "silent", items(), timeout=100.0)
        pending = asyncio.ensure_future(anext(stream))
        asyncio.get_running_loop().call_later(2.0, network.kill, a.peer_id)
        with pytest.raises(TransportClosed):
            await pending
        assert asyncio.get_running_loop().time() == pytest.approx(2.0)
        await a.shutdown()
        await b.shutdown()

    virtual(main())


def test_partition_and_heal() -> None:
    async def main() -> None:
        network = MemoryNetwork(limits=LIMITS)
        a, b, c, d = (network.add_peer() for _ in range(4))
        for peer in (a, b, c, d):
            await peer.add_unary_handler("echo", echo)

        async def reachable(source: Transport, target: Transport) -> bool:
            try:
                await source.call_unary(target.peer_id, "echo", b"x", timeout=1.0)
            except PeerUnreachable:
                return False
            return True

        network.partition([a.peer_id, b.peer_id], [c.peer_id])  # d is in no group: a group of its own
        assert await reachable(a, b)
        assert await reachable(b, a)
        assert not await reachable(a, c)
        assert not await reachable(c, a)
        assert not await reachable(d, a)
        assert not await reachable(d, c)
        late = network.add_peer()  # joins d's side
        await late.add_unary_handler("echo", echo)
        assert await reachable(d, late)
        # The DHT is not partitioned.
        assert await a.store("k", b"v", a.clock.time() + 60)
        assert (await c.get("k"))[None].value == b"v"
        network.heal()
        for source in (a, b, c, d):
            for target in (a, b, c, d):
                assert await reachable(source, target)
        with pytest.raises(TypeError):
            network.partition(a.peer_id, b.peer_id)
        with pytest.raises(ConfigError):
            network.partition([a.peer_id], [a.peer_id, b.peer_id])
        for peer in (a, b, c, d, late):
            await peer.shutdown()

    virtual(main())


def test_partition_stalls_a_stream_in_flight() -> None:
    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(min_delay=0.1, max_delay=0.1), limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()

        async def ticker(caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            while True:
                yield b"tick"
                await asyncio.sleep(1.0)

        await b.add_stream_handler("ticker", ticker)
        stream = a.call_stream(b.peer_id, "ticker", items(), timeout=3.0)
        assert await anext(stream) == b"tick"
        network.partition([a.peer_id], [b.peer_id])
        with pytest.raises(RequestTimeout):
            await anext(stream)
        await a.shutdown()
        await b.shutdown()

    virtual(main())


def test_handler_returning_wrong_type_is_a_remote_error() -> None:
    async def main() -> None:
        network = MemoryNetwork(limits=LIMITS)
        a, b = network.add_peer(), network.add_peer()

        async def wrong(caller: str, request: bytes) -> bytes:
            return cast(bytes, "not bytes")

        await b.add_unary_handler("wrong", wrong)
        with pytest.raises(RemotePeerError, match="TypeError"):
            await a.call_unary(b.peer_id, "wrong", b"x")
        await a.shutdown()
        await b.shutdown()

    virtual(main())


# -- scale -------------------------------------------------------------------------------------


def test_two_thousand_peers_share_one_key() -> None:
    count = 2_000

    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(seed=5, min_delay=0.001, max_delay=0.05))
        peers = [network.add_peer() for _ in range(count)]
        assert len({peer.peer_id for peer in peers}) == count
        expires_at = peers[0].clock.time() + 60
        accepted = await asyncio.gather(
            *(peer.store("swarm", peer.peer_id.encode(), expires_at, subkey=peer.peer_id) for peer in peers)
        )
        assert all(accepted)
        found = await peers[0].get("swarm")
        assert len(found) == count
        assert all(found[peer.peer_id].value == peer.peer_id.encode() for peer in peers)
        stats = network.statistics()
        assert (stats.dht_stores, stats.dht_stores_accepted, stats.live_peers) == (count, count, count)
        for peer in peers:
            await peer.shutdown()

    wall = time.perf_counter()
    virtual(main())
    assert time.perf_counter() - wall < 5.0
