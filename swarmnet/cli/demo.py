"""``swarmnet demo``: the main demo. A local swarm trains a real model on real text with DiLoCo.

It starts a bootstrap node and N trainer peers, each a separate ``swarmnet`` process on the real
transport (libp2p on loopback), exactly as on separate machines. The peers train the ``demo``
GPT on their shards of the King James Bible with DiLoCo and int4 pseudo-gradients; the launcher
shows their progress and, at the end, a summary: validation loss before and after, generated
text, and the bytes each peer sent against what per-step data-parallel all-reduce would have sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from swarmnet.cli.common import ExitCode, configure_logging, install_stop_signals
from swarmnet.cli.demo_report import print_summary
from swarmnet.cli.processes import LOOPBACK, first_line, spawn, stop_all

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="train a model on a local swarm (bootstrap + trainer peers) with DiLoCo, then summarize",
        description="Start a bootstrap node and N trainer peers as separate processes on loopback; they train "
        "a byte-level GPT on the KJV text with DiLoCo and compressed pseudo-gradients. Prints progress, then "
        "validation loss before/after, generated text and bytes sent vs per-step all-reduce.",
        epilog="example:\n  swarmnet demo --peers 4 --preset demo --steps 1200 --codec int4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--peers", type=int, default=3, help="trainer peers (default %(default)s)")
    parser.add_argument("--preset", default="demo", help="model preset (default %(default)s)")
    parser.add_argument("--steps", type=int, default=600, help="inner steps per peer (default %(default)s)")
    parser.add_argument("--inner-steps", type=int, default=20, help="H, inner steps per sync (default %(default)s)")
    parser.add_argument("--codec", default="int4", help="pseudo-gradient codec (default %(default)s)")
    parser.add_argument("--outer-lr", type=float, default=0.7, help="outer Nesterov lr (default %(default)s)")
    parser.add_argument("--outer-momentum", type=float, default=0.9, help="outer momentum (default %(default)s)")
    parser.add_argument("--fragments", type=int, default=1, help="Streaming DiLoCo fragments (default 1: DiLoCo)")
    parser.add_argument("--corpus", default="kjv", help="corpus (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per peer (default %(default)s)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep logs, checkpoints and summaries here; without it they go to a temporary folder that is "
        "deleted after a successful run and kept (its path printed) after a failed one",
    )
    parser.add_argument("--log-level", default=None, help="log level of this launcher")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo to the end (or until Ctrl+C), then print the summary."""
    configure_logging(args.log_level or "WARNING")
    if args.peers < 1 or args.steps < 1:
        print("--peers and --steps must be at least 1", file=sys.stderr)
        return ExitCode.USAGE
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_run(args, args.workdir))
    workdir = Path(tempfile.mkdtemp(prefix="swarmnet-demo-"))
    code: int = ExitCode.NETWORK  # until the run says otherwise (an exception keeps the logs too)
    try:
        code = asyncio.run(_run(args, workdir))
    finally:
        if code == ExitCode.OK:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir} (dht.log, peer-N.log; --workdir keeps them always)", file=sys.stderr)
    return code


def _trainer_argv(args: argparse.Namespace, workdir: Path, address: str, index: int) -> list[str]:
    return [
        "peer", "--initial-peers", address, "--host-maddrs", LOOPBACK,
        "--identity", str(workdir / f"peer-{index}.pem"),
        "--swarm", "demo", "--role", "trainer", "--run", "demo", "--preset", args.preset, "--corpus", args.corpus,
        "--shard", str(index), "--shards", str(args.peers), "--max-steps", str(args.steps),
        "--inner-steps", str(args.inner_steps), "--codec", args.codec, "--fragments", str(args.fragments),
        "--outer-lr", str(args.outer_lr), "--outer-momentum", str(args.outer_momentum),
        "--warmup-steps", str(max(1, args.steps // 20)), "--threads", str(args.threads), "--progress", "json",
        "--summary", str(workdir / f"peer-{index}.json"), "--checkpoint-dir", str(workdir / f"checkpoints-{index}"),
        "--benchmark-seconds", "0", "--bandwidth-mbps", "1000",
    ]  # fmt: skip


async def _run(args: argparse.Namespace, workdir: Path) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    started = time.monotonic()
    processes: list[asyncio.subprocess.Process | None] = []
    try:
        bootstrap = await spawn(
            workdir, "dht", "dht", "--host-maddrs", LOOPBACK, "--identity", str(workdir / "dht.pem")
        )
        processes.append(bootstrap)
        address = await first_line(bootstrap)
        print(f"bootstrap node {address}\nstarting {args.peers} trainer peers (logs in {workdir})", flush=True)
        peers = [
            await spawn(workdir, f"peer-{i}", *_trainer_argv(args, workdir, address, i)) for i in range(args.peers)
        ]
        processes.extend(peers)
        await _follow(peers, args, stop)
    except (RuntimeError, TimeoutError) as e:  # the bootstrap node exited or hung before printing its address
        logger.error("the bootstrap node did not start: %s", e or "no address within the deadline")
        return ExitCode.NETWORK
    finally:
        await stop_all(processes)
    summaries = [_load(workdir / f"peer-{i}.json") for i in range(args.peers)]
    print_summary([s for s in summaries if s is not None], time.monotonic() - started)
    if all(summaries):
        return ExitCode.OK
    return ExitCode.INTERRUPTED if stop.is_set() else ExitCode.NETWORK


async def _follow(peers: list[asyncio.subprocess.Process], args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Print the peers' progress until they all exit, or stop them on Ctrl+C."""
    latest: dict[int, dict[str, Any]] = {}
    readers = [asyncio.create_task(_read(i, p, latest)) for i, p in enumerate(peers)]
    stopping = asyncio.create_task(stop.wait())
    last_print = 0.0
    while not all(r.done() for r in readers):
        await asyncio.wait([*readers, stopping], timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            print("stopping: peers finish their current step and leave", flush=True)
            await stop_all(list(peers), timeout=60.0)
            break
        if time.monotonic() - last_print >= 10.0 and latest:
            last_print = time.monotonic()
            print(_status_line(latest, args.steps), flush=True)
    stopping.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


async def _read(index: int, process: asyncio.subprocess.Process, latest: dict[int, dict[str, Any]]) -> None:
    assert process.stdout is not None
    async for raw in process.stdout:
        line = raw.decode(errors="replace").strip()
        if line.startswith("{"):
            try:
                latest[index] = json.loads(line)
            except ValueError:
                continue
    await process.wait()


def _status_line(latest: dict[int, dict[str, Any]], steps: int) -> str:
    parts = []
    for index in sorted(latest):
        p = latest[index]
        parts.append(f"peer {index}: step {p['step']}/{steps} round {p['rounds']} loss {p['loss']:.3f}")
    return " | ".join(parts)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        summary: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary
