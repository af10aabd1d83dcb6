"""The ``swarmnet`` command: parses the subcommand and hands over to its module."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
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
    """Run the command line; returns the process exit code.

    Without ``argv`` (the ``swarmnet`` command, ``python -m swarmnet``) this call is the whole process: once
    the command has returned, everything it opened (connections, files, child processes) is closed, and the
    process ends at once instead of through the interpreter's teardown, which takes seconds once torch is
    imported (3 s on a busy 2-core machine) and would delay every stop by that much.
    """
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    if argv is None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    logging.shutdown()  # flushes every handler
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (the reader went away) loses nothing we need
            stream.flush()
    os._exit(code)
