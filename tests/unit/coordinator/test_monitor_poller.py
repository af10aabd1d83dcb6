"""TelemetryPoller: real publishers and reader on the in-memory transport feed the state; failures are survived."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from swarmnet.clock import run_virtual
from swarmnet.coordinator.monitor.poller import TelemetryPoller
from swarmnet.coordinator.monitor.state import MonitorState, TelemetryEntryLike
from swarmnet.identity import Identity
from swarmnet.records import sign_record
from swarmnet.telemetry import TelemetryConfig, TelemetryPublisher, TelemetryReader, TelemetryReport
from swarmnet.transport.memory import MemoryNetwork
from tests.support import apoll_until

CONFIG = TelemetryConfig(swarm="test", period=1.0, ttl=10.0)


def test_published_reports_reach_the_state_and_forgeries_do_not() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, observer_id = Identity.generate(), Identity.generate()
        transport, observer = network.add_peer(identity.peer_id), network.add_peer(observer_id.peer_id)
        steps = iter(range(1000))
        publisher = TelemetryPublisher(
            transport, identity, CONFIG, lambda: TelemetryReport(role="trainer", run="r", step=next(steps))
        )
        await publisher.start()
        # A genuine record stored in someone else's slot, and bytes that are no record at all.
        victim = Identity.generate().peer_id
        now = network.clock.time()
        forged = sign_record(observer_id, TelemetryReport(), key=CONFIG.key, subkey=observer_id.peer_id,
                             timestamp=now, expires_at=now + 5)  # fmt: skip
        await observer.store(CONFIG.key, forged, now + 5, subkey=victim)
        await observer.store(CONFIG.key, b"\x00garbage", now + 5, subkey=Identity.generate().peer_id)

        state = MonitorState("test", stale_s=3, drop_s=20)
        poller = TelemetryPoller(TelemetryReader(observer, CONFIG), state, network.clock, interval=0.5)
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))

        async def listed() -> bool:
            peers = state.snapshot(network.clock.time())["peers"]
            return [p["peer_id"] for p in peers] == [identity.peer_id] and peers[0]["step"] >= 3

        await apoll_until(listed, timeout=10, what="the publisher's reports in the state")
        snapshot = state.snapshot(network.clock.time())
        assert snapshot["peers"][0]["role"] == "trainer"
        assert sum(snapshot["rejected"].values()) >= 2, snapshot["rejected"]
        await publisher.stop()  # publishes state="left": dropped at the next read

        async def gone() -> bool:
            return not state.snapshot(network.clock.time())["peers"]

        await apoll_until(gone, timeout=5, what="the departed peer dropped")
        stop.set()
        await task
        assert poller.statistics().reads >= 4
        assert poller.statistics().failures == 0

    run_virtual(main())


class _Failing:
    def __init__(self) -> None:
        self.calls = 0

    async def read(self) -> Sequence[TelemetryEntryLike]:
        self.calls += 1
        raise ConnectionError("dht unreachable")

    def rejections(self) -> dict[str, int]:
        return {}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def test_failed_reads_are_counted_and_peers_still_expire() -> None:
    async def main() -> None:
        state = MonitorState("test", stale_s=2, drop_s=5)
        clock = _Clock()
        identity = Identity.generate()

        class _Entry:
            peer_id, report, timestamp, expires_at = identity.peer_id, TelemetryReport(), 999.0, 2000.0

        state.ingest([_Entry()], clock.now)
        poller = TelemetryPoller(_Failing(), state, clock, interval=0.1)
        assert not await poller.poll_once()
        assert len(state.snapshot(clock.now)["peers"]) == 1
        clock.now += 6
        assert not await poller.poll_once()
        assert state.snapshot(clock.now)["peers"] == []
        stats = poller.statistics()
        assert (stats.reads, stats.failures) == (0, 2)
        assert stats.last_error == "ConnectionError: dht unreachable"

    asyncio.run(main())
