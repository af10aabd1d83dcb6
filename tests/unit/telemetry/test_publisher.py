"""Telemetry publishing and reading on the in-memory transport, in virtual time."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from swarmnet.clock import run_virtual
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.records import RecordPolicy, seal_body, sign_record
from swarmnet.telemetry import TelemetryConfig, TelemetryEntry, TelemetryPublisher, TelemetryReader, TelemetryReport
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport
from tests.support import apoll_until

CONFIG = TelemetryConfig(swarm="test", period=2.0, ttl=10.0, retry_interval=0.5, leave_linger=5.0)


def peer(network: MemoryNetwork) -> tuple[Identity, MemoryTransport]:
    identity = Identity.generate()
    return identity, network.add_peer(identity.peer_id)


async def read_one(reader: TelemetryReader, peer_id: str) -> TelemetryEntry | None:
    return next((e for e in await reader.read() if e.peer_id == peer_id), None)


def test_a_published_report_reads_back_with_its_record_times() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        _, observer = peer(network)
        report = TelemetryReport(role="trainer", run="kjv", step=7, round=2, loss=1.5, samples_per_s=12.0)
        publisher = TelemetryPublisher(transport, identity, CONFIG, lambda: report)
        await publisher.start()
        (entry,) = await TelemetryReader(observer, CONFIG).read()
        assert entry.peer_id == identity.peer_id
        assert entry.report == report
        assert entry.timestamp == pytest.approx(network.clock.time())
        assert entry.expires_at - entry.timestamp == pytest.approx(CONFIG.ttl)
        stats = publisher.statistics()
        assert (stats.published, stats.failed) == (1, 0)
        assert stats.last_published_at == pytest.approx(entry.timestamp)
        await publisher.stop()

    run_virtual(main())


def test_reports_refresh_every_period_far_beyond_the_ttl() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        _, observer = peer(network)
        steps = itertools.count()
        publisher = TelemetryPublisher(transport, identity, CONFIG, lambda: TelemetryReport(step=next(steps)))
        await publisher.start()
        reader = TelemetryReader(observer, CONFIG)
        seen = []
        for _ in range(5):
            await asyncio.sleep(CONFIG.ttl)
            entry = await read_one(reader, identity.peer_id)
            assert entry is not None
            assert entry.report.state == "online"
            seen.append(entry.report.step)
        assert seen == sorted(seen)
        assert len(set(seen)) == 5
        assert publisher.statistics().published >= 5 * CONFIG.ttl / CONFIG.period
        await publisher.stop()

    run_virtual(main())


def test_stop_marks_the_peer_left_at_once_then_the_farewell_expires() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        _, observer = peer(network)
        publisher = TelemetryPublisher(transport, identity, CONFIG, lambda: TelemetryReport(step=3))
        await publisher.start()
        await asyncio.sleep(CONFIG.period * 1.5)
        await publisher.stop()
        reader = TelemetryReader(observer, CONFIG)
        entry = await read_one(reader, identity.peer_id)
        assert entry is not None
        assert entry.report.state == "left"
        assert entry.report.step == 3
        await publisher.stop()  # idempotent: no second farewell
        assert publisher.statistics().published == 3  # start, one period, the farewell

        async def gone() -> bool:
            return await read_one(reader, identity.peer_id) is None

        await apoll_until(gone, timeout=CONFIG.ttl + CONFIG.leave_linger, what="the farewell to expire")
        await asyncio.sleep(3 * CONFIG.period)  # and no refresh brings it back
        assert await gone()

    run_virtual(main())


def test_stop_without_leave_lets_the_last_report_expire() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        _, observer = peer(network)
        publisher = TelemetryPublisher(transport, identity, CONFIG, lambda: TelemetryReport())
        await publisher.start()
        await publisher.stop(leave=False)
        entry = await read_one(TelemetryReader(observer, CONFIG), identity.peer_id)
        assert entry is not None
        assert entry.report.state == "online"
        with pytest.raises(RuntimeError):
            await publisher.start()

    run_virtual(main())


def test_a_failing_collect_is_logged_and_retried_without_stopping_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        _, observer = peer(network)
        calls = itertools.count()

        def collect() -> TelemetryReport:
            call = next(calls)
            if 1 <= call <= 3:
                raise RuntimeError("statistics() broke")
            return TelemetryReport(step=call)

        publisher = TelemetryPublisher(transport, identity, CONFIG, collect)
        with caplog.at_level(logging.DEBUG, logger="swarmnet.telemetry"):
            await publisher.start()
            reader = TelemetryReader(observer, CONFIG)

            async def recovered() -> bool:
                entry = await read_one(reader, identity.peer_id)
                return entry is not None and entry.report.step >= 4

            await apoll_until(recovered, timeout=CONFIG.period + 4 * CONFIG.retry_interval, what="a fresh report")
        assert publisher.statistics().failed == 3
        assert sum("could not build the telemetry report" in r.message for r in caplog.records) == 3
        assert [r.levelno for r in caplog.records if "could not build" in r.message][:2] == [
            logging.WARNING,
            logging.DEBUG,
        ]  # one warning per streak of failures
        await publisher.stop()

    run_virtual(main())


def test_lost_stores_are_retried_quickly() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        publisher = TelemetryPublisher(transport, identity, CONFIG, lambda: TelemetryReport())
        await publisher.start()
        network.set_faults(FaultPlan(seed=1, drop_rate=1.0))
        await asyncio.sleep(CONFIG.period * 2.5)
        failed = publisher.statistics().failed
        assert failed >= 2
        network.set_faults(FaultPlan())
        published = publisher.statistics().published

        async def stored() -> bool:
            return publisher.statistics().published > published

        await apoll_until(stored, timeout=CONFIG.retry_interval * 1.5, what="the retry to be stored")
        await publisher.stop()

    run_virtual(main())


def test_forged_junk_oversized_and_foreign_records_are_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        network = MemoryNetwork()  # the in-memory DHT has no storage validator: the reader must defend
        honest, honest_transport = peer(network)
        victim, victim_transport = peer(network)
        attacker, attacker_transport = peer(network)
        _, observer = peer(network)
        for identity, transport in ((honest, honest_transport), (victim, victim_transport)):
            await TelemetryPublisher(transport, identity, CONFIG, lambda: TelemetryReport(role="honest")).start()
        key, now = CONFIG.key, network.clock.time()
        # Signed by the attacker for the victim's slot, with a later expiry so the DHT keeps it.
        forged = sign_record(attacker, TelemetryReport(role="evil"), key=key, subkey=victim.peer_id,
                             timestamp=now, expires_at=now + 60)  # fmt: skip
        assert await attacker_transport.store(key, forged, now + 60, subkey=victim.peer_id)
        assert await attacker_transport.store(key, b"\x00garbage", now + 60, subkey="junk")
        # Genuinely signed by the attacker for its own slot, but padded past the record size limit.
        body = {"protocol_version": 1, "kind": "telemetry", "peer_id": attacker.peer_id, "key": key,
                "subkey": attacker.peer_id, "timestamp": now, "expires_at": now + 60,
                "payload": {"role": "big", "padding": "x" * 20_000}}  # fmt: skip
        oversized = seal_body(attacker, body)
        assert len(oversized) > CONFIG.records.max_bytes
        assert await attacker_transport.store(key, oversized, now + 60, subkey=attacker.peer_id)

        reader = TelemetryReader(observer, CONFIG)
        with caplog.at_level(logging.DEBUG, logger="swarmnet"):
            entries = await reader.read()
        assert [(e.peer_id, e.report.role) for e in entries] == [(honest.peer_id, "honest")]
        assert reader.rejections() == {"slot": 1, "malformed": 1, "oversized": 1}
        assert "in slot" in caplog.text

    run_virtual(main())


def test_entries_are_one_per_peer_sorted_by_peer_id() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        peers = [peer(network) for _ in range(4)]
        _, observer = peer(network)
        for identity, transport in peers:
            publisher = TelemetryPublisher(transport, identity, CONFIG, lambda: TelemetryReport())
            await publisher.start()
            await publisher.publish()  # a second report replaces the first, it does not add one
        entries = await TelemetryReader(observer, CONFIG).read()
        assert [e.peer_id for e in entries] == sorted(identity.peer_id for identity, _ in peers)

    run_virtual(main())


def test_a_report_over_the_size_limit_is_not_stored() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        tight = TelemetryConfig(swarm="test", period=2.0, ttl=10.0, records=RecordPolicy(max_bytes=300))
        publisher = TelemetryPublisher(transport, identity, tight, lambda: TelemetryReport())
        assert not await publisher.publish()
        assert publisher.statistics().failed == 1
        assert await transport.get(tight.key) == {}

    run_virtual(main())


def test_publisher_needs_a_valid_config_and_its_own_transport() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, transport = peer(network)
        with pytest.raises(ConfigError):
            TelemetryPublisher(transport, identity, TelemetryConfig(period=20.0, ttl=30.0), TelemetryReport)
        with pytest.raises(ConfigError):
            TelemetryPublisher(transport, Identity.generate(), CONFIG, TelemetryReport)

    run_virtual(main())
