"""``swarmnet coordinator --initial-peers``: it joins the DHT as a client and publishes its round status."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import save_file

from swarmnet.identity import Identity
from swarmnet.telemetry import TelemetryConfig, TelemetryEntry, TelemetryReader, TelemetryReport
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport
from tests.integration.federated.harness import initial_adapter, make_client, run_all
from tests.support import SwarmnetProcess, apoll_until

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(180)]

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
CONFIG = TelemetryConfig(swarm="fed")


async def _scenario(tmp_path: Path, processes: list[SwarmnetProcess]) -> None:
    dht = SwarmnetProcess("dht", ["dht", "--host-maddrs", LOOPBACK, "--identity", str(tmp_path / "d")], tmp_path)
    processes.append(dht)
    bootstrap = await asyncio.to_thread(dht.next_line, 60)
    adapter = tmp_path / "adapter.safetensors"
    save_file(initial_adapter(), str(adapter))
    args = ["coordinator", "--state-dir", str(tmp_path / "state"), "--initial-adapter", str(adapter), "--port", "0",
            "--clients-per-round", "2", "--min-clients", "2", "--local-steps", "2", "--initial-peers", bootstrap,
            "--swarm", CONFIG.swarm, "--telemetry-period", "1"]  # fmt: skip
    coordinator = SwarmnetProcess("coordinator", args, tmp_path)
    processes.append(coordinator)
    address = await asyncio.to_thread(coordinator.next_line, 90)
    transport = await HivemindTransport.create(
        Identity.generate(), HivemindConfig(initial_peers=(bootstrap,), client_mode=True)
    )
    try:
        reader = TelemetryReader(transport, CONFIG)
        waiting = await _coordinator_entry(reader, lambda r: r.state == "waiting", "the waiting coordinator")
        assert (waiting.report.run, waiting.report.round, waiting.report.federated) == ("federated", 0, ())

        clients = [make_client(address, seed) for seed in range(2)]
        try:
            await asyncio.to_thread(run_all, clients, lambda c: c.run(max_rounds=1, timeout_s=60))
        finally:
            for client in clients:
                client.close()
        done = await _coordinator_entry(reader, lambda r: bool(r.federated), "a finished round")
        (first,) = done.report.federated[:1]
        assert (first.round, first.outcome, first.contributors) == (1, "completed", 2)

        coordinator.signal(signal.SIGTERM)
        assert await asyncio.to_thread(coordinator.wait, 30) == 0, coordinator.log_tail()
        await _coordinator_entry(reader, lambda r: r.state == "left", "the coordinator's departure")
    finally:
        await transport.shutdown()


async def _coordinator_entry(
    reader: TelemetryReader, predicate: Callable[[TelemetryReport], bool], what: str
) -> TelemetryEntry:
    async def found() -> TelemetryEntry | None:
        return next((e for e in await reader.read() if e.report.role == "coordinator" and predicate(e.report)), None)

    entry = await apoll_until(found, timeout=30.0, interval=0.5, what=what)
    assert entry is not None
    return entry


def test_coordinator_publishes_round_status_to_the_swarm(tmp_path: Path) -> None:
    processes: list[SwarmnetProcess] = []
    try:
        asyncio.run(_scenario(tmp_path, processes))
    finally:
        for process in reversed(processes):
            process.stop()
