"""MonitorServer over real HTTP on port 0: every route, 404s, path traversal refused, 200-peer latency."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Iterator

import pytest

from swarmnet.coordinator.monitor.server import MonitorServer
from swarmnet.coordinator.monitor.state import MonitorState
from swarmnet.testing import simulated_entries


@pytest.fixture
def server() -> Iterator[MonitorServer]:
    state = MonitorState("test")
    now = time.time()
    state.ingest(simulated_entries(200, now), now)
    with MonitorServer(state, host="127.0.0.1", port=0) as running:
        yield running


def fetch(server: MonitorServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_page_and_assets_are_served(server: MonitorServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/"
    status, headers, body = fetch(server, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"/static/app.js" in body
    for path, kind in [
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/static/vendor/uPlot.min.css", "text/css"),
    ]:
        status, headers, body = fetch(server, path)
        assert status == 200, path
        assert headers["content-type"].startswith(kind), path
        assert body, path
        assert headers["x-content-type-options"] == "nosniff"


def test_api_swarm_lists_peers(server: MonitorServer) -> None:
    status, headers, body = fetch(server, "/api/swarm")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    snapshot = json.loads(body)
    assert len(snapshot["peers"]) == 200
    assert all({"peer_id", "role", "last_seen"} <= p.keys() for p in snapshot["peers"])
    assert {"totals", "runs", "averaging", "federated"} <= snapshot.keys()
    status, _, body = fetch(server, "/api/swarm?cache=bust")
    assert status == 200
    assert json.loads(body)["swarm"] == "test"


def test_metrics_and_health(server: MonitorServer) -> None:
    status, headers, body = fetch(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE swarmnet_peers gauge\nswarmnet_peers 200\n" in body
    status, _, body = fetch(server, "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_health_is_503_before_the_first_read_and_when_reads_stop() -> None:
    state = MonitorState("test")
    now = [1000.0]
    with MonitorServer(state, port=0, clock=lambda: now[0], health_after_s=5) as server:
        status, _, body = fetch(server, "/healthz")
        assert (status, json.loads(body)["status"]) == (503, "starting")
        state.ingest([], 1000.0)
        assert fetch(server, "/healthz")[0] == 200
        now[0] = 1010.0
        status, _, body = fetch(server, "/healthz")
        assert (status, json.loads(body)["status"]) == (503, "stale")


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/static/",
        "/static/missing.js",
        "/static/../state.py",
        "/static/%2e%2e/state.py",
        "/static/..%2fstate.py",
        "/static/vendor/../../server.py",
        "/static/.hidden",
        "/static//etc/passwd",
        "/static/vendor/x/y.js",
        "/static/%2fetc%2fpasswd",
        "/api",
    ],
)
def test_unknown_paths_and_traversal_are_404(server: MonitorServer, path: str) -> None:
    status, _, body = fetch(server, path)
    assert status == 404, path
    assert b"import" not in body


def test_writes_are_refused(server: MonitorServer) -> None:
    assert fetch(server, "/api/swarm", "POST")[0] == 405
    assert fetch(server, "/api/swarm", "DELETE")[0] == 501
    status, headers, body = fetch(server, "/api/swarm", "HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) > 0


def test_api_swarm_latency_with_200_peers(server: MonitorServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        connection.request("GET", "/api/swarm")
        response = connection.getresponse()
        body = response.read()
        timings.append(time.perf_counter() - started)
        assert response.status == 200
    connection.close()
    median, worst = statistics.median(timings) * 1e3, max(timings) * 1e3
    print(f"/api/swarm, 200 peers, {len(body) / 1e3:.0f} kB: median {median:.2f} ms, max {worst:.2f} ms")
    assert median < 100


def test_close_releases_the_port() -> None:
    server = MonitorServer(MonitorState("test"), port=0)
    server.start()
    port = server.port
    server.close()
    server.close()
    with MonitorServer(MonitorState("test"), port=port) as again:
        assert again.port == port


def test_monitor_subcommand_flags() -> None:
    from swarmnet.cli.main import build_parser

    args = build_parser().parse_args(["monitor", "--initial-peers", "/ip4/127.0.0.1/tcp/1/p2p/x", "--port", "0"])
    assert (args.swarm, args.host, args.port, args.interval) == ("main", "127.0.0.1", 0, 1.0)
    assert args.run.__module__ == "swarmnet.cli.monitor"
