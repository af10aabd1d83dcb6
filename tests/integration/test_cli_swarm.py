"""A bootstrap node and three peers as separate processes on loopback, observed with `swarmnet status`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import SwarmnetProcess

pytestmark = pytest.mark.multiprocess

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
TTL = 6.0


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[SwarmnetProcess]]:
    """Processes appended here are stopped after the test, whatever happens."""
    started: list[SwarmnetProcess] = []
    yield started
    for process in reversed(started):
        process.stop()


def start(processes: list[SwarmnetProcess], tmp_path: Path, name: str, *args: str) -> SwarmnetProcess:
    process = SwarmnetProcess(name, list(args), tmp_path)
    processes.append(process)
    return process


def start_peer(processes: list[SwarmnetProcess], tmp_path: Path, name: str, bootstrap: str) -> SwarmnetProcess:
    return start(
        processes, tmp_path, name, "peer", "--initial-peers", bootstrap, "--host-maddrs", LOOPBACK,
        "--identity", str(tmp_path / f"{name}.pem"), "--swarm", "it", "--ttl", str(TTL), "--heartbeat", "1",
        "--benchmark-seconds", "0.05", "--roles", "volunteer", name,
    )  # fmt: skip


def listed(watch: SwarmnetProcess, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
    """Read `status --watch --json` lines until one satisfies ``predicate``."""
    line = watch.line_matching(lambda line: predicate(peer_ids(line)), timeout, f"status showing {what}")
    snapshot: dict[str, Any] = json.loads(line)
    return snapshot


def peer_ids(status_line: str) -> set[str]:
    return {p["peer_id"] for p in json.loads(status_line)["peers"]}


def test_status_lists_peers_and_sees_them_leave_or_die(processes: list[SwarmnetProcess], tmp_path: Path) -> None:
    bootstrap = start(processes, tmp_path, "dht", "dht", "--host-maddrs", LOOPBACK, "--identity", str(tmp_path / "d"))
    address = bootstrap.next_line(120)
    assert address.startswith("/ip4/127.0.0.1/tcp/")
    assert "/p2p/12D3KooW" in address
    watch = start(
        processes, tmp_path, "watch", "status", "--initial-peers", address, "--swarm", "it", "--json", "--watch", "0.3"
    )
    watch.next_line(120)  # the watcher is connected and polling before the peers start

    started_at = time.monotonic()
    peers = {name: start_peer(processes, tmp_path, name, address) for name in ("alpha", "beta", "gamma")}
    ids = {name: peer.next_line(120).removeprefix("ready ") for name, peer in peers.items()}
    # A peer announces itself before it prints ready, so the listing follows within the watcher's poll and
    # a DHT read; the deadline starts there, not at process start (imports alone take 10 s on a busy machine).
    snapshot = listed(watch, lambda seen: set(ids.values()) <= seen, TTL, "3 peers")
    print(f"3 peers listed {time.monotonic() - started_at:.1f}s after their start")
    by_id = {p["peer_id"]: p for p in snapshot["peers"]}
    assert by_id[ids["beta"]]["roles"] == ["volunteer", "beta"]
    assert by_id[ids["beta"]]["version"]
    assert by_id[ids["beta"]]["device"]["cpu_count"] >= 1

    one_shot = subprocess.run(
        [sys.executable, "-m", "swarmnet", "status", "--initial-peers", address, "--swarm", "it", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    listing = json.loads(one_shot.stdout)
    assert {p["peer_id"] for p in listing["peers"]} == set(ids.values())
    assert all({"peer_id", "roles", "version"} <= p.keys() for p in listing["peers"])

    peers["alpha"].signal(signal.SIGTERM)
    assert peers["alpha"].wait(20) == 0, peers["alpha"].log_tail()
    left_at = time.monotonic()
    listed(watch, lambda seen: ids["alpha"] not in seen, 3, "alpha gone after SIGTERM")
    print(f"SIGTERMed peer gone from status {time.monotonic() - left_at:.1f}s after it exited")

    helpers = psutil.Process(peers["beta"].process.pid).children(recursive=True)
    assert any("p2pd" in h.name() for h in helpers), "expected beta's p2p daemon among its children"
    peers["beta"].signal(signal.SIGKILL)
    peers["beta"].wait(10)
    killed_at = time.monotonic()
    listed(watch, lambda seen: ids["beta"] not in seen, TTL + 3, "beta gone after SIGKILL")
    print(f"SIGKILLed peer gone from status {time.monotonic() - killed_at:.1f}s after the kill (ttl {TTL}s)")
    _, alive = psutil.wait_procs(helpers, timeout=10)
    assert not alive, f"the killed peer's DHT process or p2p daemon survived it: {alive}"
    assert ids["gamma"] in {p["peer_id"] for p in json.loads(watch.next_line(5))["peers"]}
