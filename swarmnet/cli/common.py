"""Pieces every subcommand shares: logging, stop signals, exit codes, network flags."""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import os
import signal
import sys

from swarmnet.errors import ConfigError, StartupError
from swarmnet.identity import Identity
from swarmnet.telemetry import TelemetryConfig
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

__all__ = [
    "ExitCode",
    "add_network_flags",
    "add_telemetry_flag",
    "configure_logging",
    "install_stop_signals",
    "network_config",
    "start_transport",
    "telemetry_config",
]

LOGLEVEL_ENV = "SWARMNET_LOGLEVEL"

logger = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    """Process exit codes; 1 stays Python's own code for an unhandled crash."""

    OK = 0
    USAGE = 2  # bad flags or configuration
    IDENTITY = 3  # the key file cannot be used
    NETWORK = 4  # could not start or reach the swarm
    INTERRUPTED = 130  # stopped by the user before it was ready


def configure_logging(level: str | None) -> None:
    """Log to stderr at ``level``, else $SWARMNET_LOGLEVEL, else INFO. hivemind stays at WARNING unless DEBUG."""
    name = (level or os.environ.get(LOGLEVEL_ENV) or "INFO").upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        raise SystemExit(f"unknown log level {name!r}; use DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    hivemind_level = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    logging.getLogger("hivemind").setLevel(hivemind_level)


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT (Ctrl+C), so the command can leave cleanly and exit 0."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def add_network_flags(parser: argparse.ArgumentParser, *, default_host: str) -> None:
    """Flags for reaching the libp2p network."""
    group = parser.add_argument_group("network")
    group.add_argument(
        "--initial-peers",
        nargs="+",
        default=[],
        metavar="MULTIADDR",
        help="multiaddrs of running peers, as printed by `swarmnet dht` (e.g. /ip4/1.2.3.4/tcp/31337/p2p/12D3...)",
    )
    group.add_argument(
        "--host-maddrs",
        nargs="+",
        default=[default_host],
        metavar="MULTIADDR",
        help=f"where to listen (default {default_host}; port 0 picks a free port)",
    )
    group.add_argument(
        "--announce-maddrs", nargs="+", default=[], metavar="MULTIADDR", help="public addresses to advertise"
    )
    group.add_argument("--client-mode", action="store_true", help="reach the DHT without serving it (behind NAT)")
    group.add_argument("--log-level", default=None, help=f"DEBUG, INFO, WARNING or ERROR (default ${LOGLEVEL_ENV})")


def network_config(args: argparse.Namespace, *, client_mode: bool | None = None) -> HivemindConfig:
    """Build the transport config from parsed network flags."""
    return HivemindConfig(
        initial_peers=tuple(args.initial_peers),
        host_maddrs=tuple(args.host_maddrs),
        announce_maddrs=tuple(args.announce_maddrs),
        client_mode=args.client_mode if client_mode is None else client_mode,
    )


async def start_transport(identity: Identity, config: HivemindConfig, *, failure: str) -> HivemindTransport | ExitCode:
    """Start the transport; on a bad config or an unreachable network log why (``failure``: what could not be
    done) and return the exit code instead."""
    try:
        return await HivemindTransport.create(identity, config)
    except ConfigError as e:
        logger.error("%s", e)
        return ExitCode.USAGE
    except StartupError as e:
        logger.error("%s: %s", failure, e)
        return ExitCode.NETWORK


def add_telemetry_flag(parser: argparse.ArgumentParser) -> None:
    """``--telemetry-period``: how often this process publishes its telemetry report (0 disables it)."""
    parser.add_argument(
        "--telemetry-period",
        type=float,
        default=TelemetryConfig().period,
        metavar="SECONDS",
        help="seconds between telemetry reports for the monitor; 0 disables them (default %(default)s)",
    )


def telemetry_config(swarm: str, period: float) -> TelemetryConfig | None:
    """The telemetry config for ``--telemetry-period`` (``None`` when 0); reports live for at least 4 periods."""
    if period == 0:
        return None
    if not period > 0:
        raise ConfigError(f"--telemetry-period must be positive, or 0 to disable: {period}")
    return TelemetryConfig(swarm=swarm, period=period, ttl=max(TelemetryConfig().ttl, 4 * period))
