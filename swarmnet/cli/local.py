"""``swarmnet local``: a bootstrap node and several peers on this machine, with live membership.

Each node is a real ``swarmnet dht`` / ``swarmnet peer`` process on loopback, exactly as on
separate machines. With ``--churn`` peers come and go (alternately SIGTERM and SIGKILL) so the
table shows clean departures vanish at once and crashed peers after their ttl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import tempfile
from pathlib import Path
from typing import Any

from swarmnet.cli.common import ExitCode, configure_logging, install_stop_signals
from swarmnet.cli.processes import LOOPBACK, first_line, spawn, stop_all
from swarmnet.cli.status import render_table
from swarmnet.identity import Identity
from swarmnet.membership import MembershipConfig, Swarm
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "local",
        help="run a local swarm (bootstrap node + peers) and show its live membership",
        description="Start a bootstrap node and N peers as separate processes on loopback and print the "
        "swarm's membership every few seconds until Ctrl+C.",
        epilog="example:\n  swarmnet local --peers 4 --churn 15",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--peers", type=int, default=3, help="number of peers (default %(default)s)")
    parser.add_argument("--swarm", default="local", help="swarm name (default %(default)s)")
    parser.add_argument("--ttl", type=float, default=10.0, help="announcement lifetime, s (default %(default)s)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between tables (default %(default)s)")
    parser.add_argument("--churn", type=float, default=None, metavar="SECONDS", help="replace a peer every SECONDS")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after SECONDS")
    parser.add_argument("--log-level", default=None, help="log level of this launcher")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the local swarm until Ctrl+C, SIGTERM or --duration."""
    configure_logging(args.log_level)
    if args.peers < 1:
        logger.error("--peers must be at least 1")
        return ExitCode.USAGE
    with tempfile.TemporaryDirectory(prefix="swarmnet-local-") as workdir:
        return asyncio.run(_run(args, Path(workdir)))


class _LocalSwarm:
    """The launcher's processes; an object only so churn can replace peers by index."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.bootstrap: asyncio.subprocess.Process | None = None
        self.address = ""
        self.peers: list[asyncio.subprocess.Process] = []
        self._started = 0

    async def start_bootstrap(self) -> None:
        key = str(self.workdir / "dht.pem")
        self.bootstrap = await spawn(self.workdir, "dht", "dht", "--host-maddrs", LOOPBACK, "--identity", key)
        self.address = await first_line(self.bootstrap)
        print(f"bootstrap node: {self.address}", flush=True)

    async def start_peer(self) -> asyncio.subprocess.Process:
        self._started += 1
        name = f"peer-{self._started}"
        heartbeat = str(max(0.5, self.args.ttl / 4))
        process = await spawn(
            self.workdir, name, "peer", "--initial-peers", self.address, "--host-maddrs", LOOPBACK,
            "--identity", str(self.workdir / f"{name}.pem"), "--swarm", self.args.swarm,
            "--ttl", str(self.args.ttl), "--heartbeat", heartbeat, "--benchmark-seconds", "0.2",
        )  # fmt: skip
        self.peers.append(process)
        return process

    async def churn_once(self, kill: bool) -> None:
        victim = self.peers.pop(random.randrange(len(self.peers)))
        victim.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        print(f"churn: {'SIGKILL' if kill else 'SIGTERM'} to peer pid {victim.pid}; starting a new one", flush=True)
        await victim.wait()
        await self.start_peer()

    async def stop_peers(self) -> None:
        """Stop every peer at once; each withdraws its record through the bootstrap node, still running."""
        await stop_all(list(self.peers))

    async def stop(self) -> None:
        """The peers first, then the bootstrap node."""
        await self.stop_peers()
        await stop_all([self.bootstrap])


async def _run(args: argparse.Namespace, workdir: Path) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    local = _LocalSwarm(args, workdir)
    try:
        await local.start_bootstrap()
        for _ in range(args.peers):
            await local.start_peer()
        await _watch(local, args, stop)
    finally:
        await local.stop()
    return ExitCode.OK


async def _watch(local: _LocalSwarm, args: argparse.Namespace, stop: asyncio.Event) -> None:
    identity = Identity.generate()
    network = HivemindConfig(initial_peers=(local.address,), client_mode=True)
    async with await HivemindTransport.create(identity, network) as transport:
        swarm = Swarm(transport, identity, MembershipConfig(swarm=args.swarm, ttl=args.ttl))
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_churn = started + (args.churn or float("inf"))
        kills = 0
        while not stop.is_set():
            now = transport.clock.time()
            print(f"\n--- swarm {args.swarm!r} after {loop.time() - started:.0f}s", flush=True)
            print(render_table(await swarm.peers(), now), flush=True)
            if args.duration is not None and loop.time() - started >= args.duration:
                break
            if loop.time() >= next_churn:
                await local.churn_once(kill=kills % 2 == 1)
                kills, next_churn = kills + 1, loop.time() + args.churn
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.interval)
        await asyncio.gather(local.stop_peers(), transport.shutdown())  # our own DHT node meanwhile
