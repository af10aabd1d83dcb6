"""``swarmnet peer``: the volunteer peer daemon."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from swarmnet.cli.common import (
    ExitCode,
    add_network_flags,
    add_telemetry_flag,
    configure_logging,
    install_stop_signals,
    network_config,
    telemetry_config,
)
from swarmnet.cli.trainer_flags import add_trainer_flags, trainer_config
from swarmnet.errors import ConfigError, IdentityError, StartupError
from swarmnet.membership import MembershipConfig
from swarmnet.peers.daemon import DEFAULT_IDENTITY_PATH, DaemonConfig, ReadyInfo, run_daemon

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  swarmnet peer --initial-peers /ip4/203.0.113.7/tcp/31337/p2p/12D3KooW... --roles volunteer
  # prints "ready <peer id>" once announced; SIGTERM or Ctrl+C leaves the swarm at once and exits 0
  swarmnet peer --initial-peers ... --role trainer --run kjv-demo --preset debug --inner-steps 50 --codec int4
  # trains with DiLoCo on its shard of the KJV text; a progress bar on a terminal, log lines otherwise
"""


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "peer",
        help="run a volunteer peer: probe resources, join a swarm, heartbeat, leave cleanly",
        description="Run a peer daemon. It measures this machine, announces itself to the swarm, refreshes "
        "the announcement by heartbeat, and withdraws at once on SIGTERM or Ctrl+C.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_flags(parser, default_host="/ip4/0.0.0.0/tcp/0")
    defaults = MembershipConfig()
    parser.add_argument("--swarm", default=defaults.swarm, help="swarm (run) name to join (default %(default)s)")
    parser.add_argument("--roles", nargs="+", default=["volunteer"], help="roles this peer offers")
    parser.add_argument(
        "--role", choices=["trainer"], default=None, help="work this peer does: trainer (DiLoCo on --run)"
    )
    parser.add_argument(
        "--identity",
        type=Path,
        default=DEFAULT_IDENTITY_PATH,
        help="Ed25519 key file, created with mode 0600 on first start (default %(default)s)",
    )
    parser.add_argument(
        "--ttl", type=float, default=defaults.ttl, help="seconds an announcement lives (default %(default)s)"
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=defaults.heartbeat_interval,
        help="seconds between announcements (default %(default)s)",
    )
    parser.add_argument("--bandwidth-mbps", type=float, default=None, help="link speed to advertise, Mbit/s")
    parser.add_argument(
        "--benchmark-seconds", type=float, default=0.3, help="start-up compute benchmark length; 0 skips it"
    )
    add_telemetry_flag(parser)
    add_trainer_flags(parser)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    """Translate flags into the daemon's config."""
    roles = tuple(args.roles) if args.role is None else (args.role,)
    return DaemonConfig(
        identity_path=args.identity,
        roles=roles,
        bandwidth_mbps=args.bandwidth_mbps,
        benchmark_seconds=args.benchmark_seconds,
        membership=MembershipConfig(swarm=args.swarm, ttl=args.ttl, heartbeat_interval=args.heartbeat),
        network=network_config(args),
        trainer=trainer_config(args) if args.role == "trainer" else None,
        telemetry=telemetry_config(args.swarm, args.telemetry_period),
    )


def run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM or Ctrl+C; exit code 0 after a clean leave."""
    configure_logging(args.log_level)
    try:
        config = config_from_args(args)
        config.validate()
    except ConfigError as e:
        logger.error("%s", e)
        return ExitCode.USAGE
    return asyncio.run(_run(config))


def _print_ready(ready: ReadyInfo) -> None:
    print(f"ready {ready.peer_id}", flush=True)


async def _run(config: DaemonConfig) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        await run_daemon(config, stop, on_ready=_print_ready)
    except IdentityError as e:
        logger.error("%s", e)
        return ExitCode.IDENTITY
    except ConfigError as e:
        logger.error("%s", e)
        return ExitCode.USAGE
    except StartupError as e:
        logger.error("could not join the swarm: %s", e)
        return ExitCode.NETWORK
    return ExitCode.OK
