"""Two trainer daemons in one process on the real transport publish their training telemetry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmnet.diloco import DiLoCoConfig, InnerConfig
from swarmnet.identity import Identity
from swarmnet.membership import MembershipConfig
from swarmnet.peers.daemon import DaemonConfig, run_daemon
from swarmnet.peers.trainer_role import TrainerRoleConfig
from swarmnet.telemetry import TelemetryConfig, TelemetryEntry, TelemetryReader
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport
from tests.support import apoll_until

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(180)]

TELEMETRY = TelemetryConfig(swarm="trainers", period=0.5, ttl=6.0)
STEPS = 400  # more than the test waits for: it stops the trainers itself


def trainer_daemon(tmp_path: Path, index: int, initial_peers: tuple[str, ...] = ()) -> DaemonConfig:
    diloco = DiLoCoConfig(inner_steps=10, codec="int4", inner=InnerConfig(warmup_steps=5, total_steps=STEPS))
    trainer = TrainerRoleConfig(
        run="tm", preset="tiny", shard=index, shards=4, diloco=diloco, max_steps=STEPS, threads=1, progress="none"
    )
    return DaemonConfig(
        identity_path=tmp_path / f"t{index}.pem", roles=("trainer",), bandwidth_mbps=1000.0, benchmark_seconds=0,
        membership=MembershipConfig(swarm="trainers", ttl=6.0, heartbeat_interval=1.0),
        network=HivemindConfig(initial_peers=initial_peers), trainer=trainer, telemetry=TELEMETRY,
    )  # fmt: skip


async def _scenario(tmp_path: Path) -> None:
    # A DHT node that outlives the trainers, so their farewells stay readable after they exit.
    observer = await HivemindTransport.create(Identity.generate())
    stop = asyncio.Event()
    addresses = tuple(await observer.visible_addresses())
    first = asyncio.create_task(run_daemon(trainer_daemon(tmp_path, 0, addresses), stop))
    second = asyncio.create_task(run_daemon(trainer_daemon(tmp_path, 1, addresses), stop))
    try:
        reader = TelemetryReader(observer, TELEMETRY)

        async def synced() -> TelemetryEntry | None:
            return next((e for e in await reader.read() if e.report.averaging and e.report.state != "left"), None)

        entry = await apoll_until(synced, timeout=120, interval=0.3, what="a trainer's report after a sync")
        assert entry is not None
        report = entry.report
        assert (report.role, report.run) == ("trainer", "tm")
        assert report.state in ("training", "syncing")
        assert report.step > 0
        assert report.loss is not None
        assert report.losses
        assert report.samples_per_s is not None
        assert report.samples_per_s > 0
        assert report.averaging[-1].codec == "int4"
        assert report.raw_bytes > report.bytes_sent > 0  # int4 on the wire against dense fp32

        stop.set()  # SIGTERM's path: each trainer finishes its exchange in flight, then both leave
        await asyncio.wait_for(asyncio.gather(first, second), 90)

        async def both_left() -> bool:
            entries = await reader.read()
            return len(entries) == 2 and all(e.report.state == "left" and e.report.step > 0 for e in entries)

        await apoll_until(both_left, timeout=10, interval=0.3, what="both trainers' departures")
    finally:
        stop.set()
        await asyncio.gather(first, second, return_exceptions=True)
        await observer.shutdown()


def test_trainers_publish_their_progress_and_departure(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
