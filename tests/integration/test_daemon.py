"""Two daemons in one process on the real transport: ready, measured link, clean leave."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmnet.identity import Identity
from swarmnet.membership import Member, MembershipConfig, Swarm
from swarmnet.peers.daemon import DaemonConfig, ReadyInfo, run_daemon
from swarmnet.peers.link_probe import LinkProbeConfig
from swarmnet.telemetry import TelemetryConfig, TelemetryEntry, TelemetryReader
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport
from tests.support import apoll_until

pytestmark = pytest.mark.multiprocess

MEMBERSHIP = MembershipConfig(swarm="daemon", ttl=6.0, heartbeat_interval=1.0)
TELEMETRY = TelemetryConfig(swarm="daemon", period=0.5, ttl=6.0)
PROBE = LinkProbeConfig(payload_bytes=1 << 20, chunk_bytes=1 << 16, max_accept_bytes=1 << 21)


def daemon_config(tmp_path: Path, name: str, initial_peers: tuple[str, ...] = ()) -> DaemonConfig:
    return DaemonConfig(
        identity_path=tmp_path / f"{name}.pem",
        roles=(name,),
        benchmark_seconds=0.05,
        membership=MEMBERSHIP,
        network=HivemindConfig(initial_peers=initial_peers),
        link_probe=PROBE,
        link_retry_interval=0.5,
        telemetry=TELEMETRY,
    )


async def _scenario(tmp_path: Path) -> None:
    stops = {"a": asyncio.Event(), "b": asyncio.Event()}
    ready: dict[str, ReadyInfo] = {}
    a_ready = asyncio.Event()

    def on_a_ready(info: ReadyInfo) -> None:
        ready["a"] = info
        a_ready.set()

    first = asyncio.create_task(run_daemon(daemon_config(tmp_path, "a"), stops["a"], on_a_ready))
    await asyncio.wait_for(a_ready.wait(), 60)
    config_b = daemon_config(tmp_path, "b", tuple(ready["a"].addresses))
    second = asyncio.create_task(run_daemon(config_b, stops["b"]))
    observer_identity = Identity.generate()
    observer = await HivemindTransport.create(
        observer_identity, HivemindConfig(initial_peers=tuple(ready["a"].addresses), client_mode=True)
    )
    try:
        swarm = Swarm(observer, observer_identity, MEMBERSHIP)

        async def b_measured() -> Member | None:
            found = [m for m in await swarm.peers() if m.info.roles == ("b",)]
            return found[0] if found and found[0].info.bandwidth_source == "measured" else None

        member_b = await apoll_until(b_measured, timeout=60, interval=0.3, what="b's measured bandwidth")
        assert member_b is not None
        assert member_b.peer_id == Identity.load_or_create(tmp_path / "b.pem").peer_id
        assert member_b.info.bandwidth_mbps is not None
        assert member_b.info.bandwidth_mbps > 1
        assert member_b.info.compute_gflops is not None

        reader, b_id = TelemetryReader(observer, TELEMETRY), member_b.peer_id

        async def b_reports(state: str) -> TelemetryEntry | None:
            found = [e for e in await reader.read() if e.peer_id == b_id and e.report.state == state]
            return found[0] if found and found[0].report.link_mbps is not None else None

        entry_b = await apoll_until(lambda: b_reports("online"), timeout=10, interval=0.3, what="b's telemetry")
        assert entry_b is not None
        report_b = entry_b.report
        assert (report_b.role, report_b.device.cpu_count) == ("b", member_b.info.device.cpu_count)
        assert report_b.uptime_s > 0

        stops["b"].set()
        await asyncio.wait_for(second, 30)
        assert [m.info.roles for m in await swarm.peers()] == [("a",)]
        assert await b_reports("left") is not None  # the monitor sees b's departure at once
    finally:
        stops["a"].set()
        stops["b"].set()
        await asyncio.gather(first, second, return_exceptions=True)
        await observer.shutdown()


def test_daemons_announce_measure_and_leave(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
