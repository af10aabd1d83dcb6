"""The ``swarmnet`` command: parses the subcommand and hands over to its module."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from swarmnet.cli import coordinator, demo, dht, local, monitor, peer, status
from swarmnet.version import __version__

__all__ = ["build_parser", "main"]

_SUBCOMMANDS = (dht, peer, status, local, demo, coordinator, monitor)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per subcommand module."""
    parser = argparse.ArgumentParser(
        prog="swarmnet",
        description="Train and serve models on a DHT-coordinated swarm of volunteer machines.",
        epilog="Start with `swarmnet demo` to watch a local swarm train a model, or `swarmnet dht` to start a swarm.",
    )
    parser.add_argument("--version", action="version", version=f"swarmnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
