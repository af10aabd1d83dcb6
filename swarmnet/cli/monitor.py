"""``swarmnet monitor``: join a swarm as a client-only peer and serve its monitoring page."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from swarmnet.cli.common import (
    ExitCode,
    add_network_flags,
    configure_logging,
    install_stop_signals,
    network_config,
    start_transport,
)
from swarmnet.coordinator.monitor.poller import TelemetryPoller
from swarmnet.coordinator.monitor.server import MonitorServer
from swarmnet.coordinator.monitor.state import MonitorState
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.membership import MembershipConfig, Swarm
from swarmnet.telemetry.record import TelemetryConfig

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  swarmnet monitor --initial-peers /ip4/203.0.113.7/tcp/31337/p2p/12D3KooW... --port 8080
  # prints "serving http://127.0.0.1:8080/" once listening; open it in a browser
  curl -s http://127.0.0.1:8080/api/swarm     # the page's data as JSON: {"totals", "peers", "runs", ...}
  curl -s http://127.0.0.1:8080/metrics       # Prometheus text format, names prefixed swarmnet_
"""


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "monitor",
        help="serve a web page, a JSON API and Prometheus metrics about a swarm",
        description="Join the DHT as a client (it never announces itself), read the signed telemetry "
        "peers publish, and serve it: the page at /, JSON at /api/swarm, Prometheus text at /metrics.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_flags(parser, default_host="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--swarm", default=MembershipConfig().swarm, help="swarm name (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port; 0 picks a free one (default %(default)s)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between reads (default %(default)s)")
    parser.add_argument(
        "--stale", type=float, default=15.0, help="grey a peer after this many seconds without news (%(default)s)"
    )
    parser.add_argument("--drop", type=float, default=60.0, help="drop a silent peer after this long (%(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl+C."""
    configure_logging(args.log_level)
    if not args.initial_peers:
        logger.error("--initial-peers is required: the monitor reads the swarm through a running peer")
        return ExitCode.USAGE
    try:
        state = MonitorState(args.swarm, stale_s=args.stale, drop_s=args.drop)
        telemetry = TelemetryConfig(swarm=args.swarm)
        telemetry.validate()
    except (ValueError, ConfigError) as e:
        logger.error("%s", e)
        return ExitCode.USAGE
    return asyncio.run(_monitor(args, state, telemetry))


async def _monitor(args: argparse.Namespace, state: MonitorState, telemetry: TelemetryConfig) -> int:
    from swarmnet.telemetry.reader import TelemetryReader

    stop = asyncio.Event()
    install_stop_signals(stop)
    identity = Identity.generate()  # throwaway: the monitor reads, it never publishes
    transport = await start_transport(
        identity, network_config(args, client_mode=True), failure="could not reach the swarm"
    )
    if isinstance(transport, ExitCode):
        return transport
    async with transport:
        try:
            server = MonitorServer(state, host=args.host, port=args.port, clock=transport.clock.time)
        except OSError as e:
            logger.error("cannot listen on %s:%s: %s", args.host, args.port, e)
            return ExitCode.USAGE
        swarm = Swarm(transport, identity, MembershipConfig(swarm=args.swarm))
        reader = TelemetryReader(transport, telemetry)
        poller = TelemetryPoller(reader, state, transport.clock, interval=args.interval, members=swarm.peers)
        with server:
            await poller.poll_once()  # the first page load already shows the swarm
            print(f"serving {server.url}", flush=True)
            await poller.run(stop)
    return ExitCode.OK
