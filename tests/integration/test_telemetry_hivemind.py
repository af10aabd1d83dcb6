"""Telemetry over the real DHT: one peer publishes, another reads it, then sees it leave."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.identity import Identity
from swarmnet.records import sign_record
from swarmnet.telemetry import TelemetryConfig, TelemetryPublisher, TelemetryReader, TelemetryReport
from swarmnet.transport.hivemind_transport import HivemindTransport
from tests.support import apoll_until, with_dht_pair

pytestmark = pytest.mark.multiprocess

CONFIG = TelemetryConfig(swarm="real", period=1.0, ttl=8.0, leave_linger=4.0)


async def _check(alice: HivemindTransport, alice_id: Identity, bob: HivemindTransport, bob_id: Identity) -> None:
    steps = iter(range(1_000_000))
    publisher = TelemetryPublisher(
        alice, alice_id, CONFIG, lambda: TelemetryReport(role="trainer", run="kjv", step=next(steps))
    )
    reader = TelemetryReader(bob, CONFIG)
    try:
        await publisher.start()

        async def refreshed() -> bool:
            entries = await reader.read()
            return any(e.peer_id == alice_id.peer_id and e.report.step >= 2 for e in entries)

        await apoll_until(refreshed, timeout=20.0, interval=0.5, what="alice's refreshed report")

        # Storage nodes refuse a report bob signs for alice's slot, however late its expiry.
        now = bob.clock.time()
        forged = sign_record(bob_id, TelemetryReport(role="evil"), key=CONFIG.key, subkey=alice_id.peer_id,
                             timestamp=now, expires_at=now + 3600)  # fmt: skip
        assert not await bob.store(CONFIG.key, forged, now + 3600, subkey=alice_id.peer_id)

        await publisher.stop()

        async def left() -> bool:
            entries = await reader.read()
            return any(e.peer_id == alice_id.peer_id and e.report.state == "left" for e in entries)

        await apoll_until(left, timeout=20.0, interval=0.5, what="alice's departure")
        assert {e.report.role for e in await reader.read()} == {"trainer"}
    finally:
        await publisher.stop()


def test_publish_read_and_leave_over_the_real_dht() -> None:
    asyncio.run(with_dht_pair(_check, client_mode=True))
