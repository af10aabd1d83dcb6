"""``swarmnet dht``: run a bootstrap node that others join through ``--initial-peers``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from swarmnet.cli.common import (
    ExitCode,
    add_network_flags,
    configure_logging,
    install_stop_signals,
    network_config,
    start_transport,
)
from swarmnet.errors import IdentityError
from swarmnet.identity import Identity

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  swarmnet dht --host-maddrs /ip4/0.0.0.0/tcp/31337
  # prints one multiaddr per line; on other machines:
  swarmnet peer --initial-peers /ip4/<this machine's IP>/tcp/31337/p2p/12D3KooW...
"""


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "dht",
        help="run a bootstrap DHT node and print its multiaddrs",
        description="Run a DHT node that other peers join. Prints the multiaddrs to pass as --initial-peers, "
        "one per line, then serves until SIGTERM or Ctrl+C.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_flags(parser, default_host="/ip4/0.0.0.0/tcp/0")
    parser.add_argument(
        "--identity",
        type=Path,
        default=Path("~/.swarmnet/dht_identity.pem"),
        help="Ed25519 key file, created on first start; a stable key keeps the multiaddrs stable",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped; exit code 0 after SIGTERM or Ctrl+C."""
    configure_logging(args.log_level)
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        identity = Identity.load_or_create(args.identity)
    except IdentityError as e:
        logger.error("%s", e)
        return ExitCode.IDENTITY
    transport = await start_transport(identity, network_config(args), failure="could not start the DHT node")
    if isinstance(transport, ExitCode):
        return transport
    async with transport:
        for address in await transport.visible_addresses():
            print(address, flush=True)
        logger.info("bootstrap node %s is up; Ctrl+C to stop", identity.peer_id)
        await stop.wait()
    return ExitCode.OK
