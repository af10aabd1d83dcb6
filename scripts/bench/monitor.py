"""Benchmark: how fast the monitor answers ``/api/swarm`` and ``/metrics`` with ``--peers`` simulated peers.

A ``MonitorState`` is fed ``--peers`` simulated peers' reports (``swarmnet.testing.simulated_entries``:
trainers of 3 runs with loss curves and averaging rounds, volunteers, a federated coordinator)
for ``--ticks`` reads, as the poller would, and served by a ``MonitorServer`` on a free loopback
port. Each route is then fetched ``--requests`` times over one keep-alive connection; the table
gives the median, p95 and max latency (request sent to body read) and the body size, plus the
time one ``ingest`` takes (the poller's work per read, when the cached bodies are rebuilt).

    .venv/bin/python scripts/bench/monitor.py --json artifacts/bench/monitor.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarmnet.coordinator.monitor.server import MonitorServer
from swarmnet.coordinator.monitor.state import MonitorState
from swarmnet.testing import simulated_entries

ROUTES = ("/api/swarm", "/metrics", "/healthz")


def _time_route(port: int, path: str, requests: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    timings, size = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        size = len(response.read())
        timings.append((time.perf_counter() - started) * 1e3)
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
    connection.close()
    timings.sort()
    return {
        "median_ms": round(statistics.median(timings), 3),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 3),
        "max_ms": round(timings[-1], 3),
        "bytes": size,
    }


def run(path: Path, peers: int, ticks: int, requests: int) -> int:
    """Measure, print a table, write ``path``."""
    state = MonitorState("bench")
    now = time.time()
    ingest_ms = []
    for tick in range(ticks):
        entries = simulated_entries(peers, now + tick, tick=tick)
        started = time.perf_counter()
        state.ingest(entries, now + tick)
        ingest_ms.append((time.perf_counter() - started) * 1e3)
    with MonitorServer(state, port=0, clock=lambda: now + ticks) as server:
        results = {route: _time_route(server.port, route, requests) for route in ROUTES}
    print(f"monitor, {peers} simulated peers, {requests} requests per route (keep-alive, loopback)")
    print(f"{'route':<12} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'kB':>8}")
    for route, r in results.items():
        print(f"{route:<12} {r['median_ms']:>10.2f} {r['p95_ms']:>8.2f} {r['max_ms']:>8.2f} {r['bytes'] / 1e3:>8.1f}")
    print(f"ingest (rebuilds both cached bodies): median {statistics.median(ingest_ms):.1f} ms over {ticks} reads")
    document = {
        "peers": peers,
        "requests": requests,
        "routes": results,
        "ingest_median_ms": round(statistics.median(ingest_ms), 3),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--peers", type=int, default=200, help="simulated peers (default %(default)s)")
    parser.add_argument("--ticks", type=int, default=5, help="reads ingested before timing (default %(default)s)")
    parser.add_argument("--requests", type=int, default=100, help="requests per route (default %(default)s)")
    args = parser.parse_args(argv)
    return run(args.json, args.peers, args.ticks, args.requests)


if __name__ == "__main__":
    sys.exit(main())
