"""Benchmark: remote-module calls over the real transport on loopback.

Prints a table and writes JSON (``--json``, default artifacts/bench/remote.json):

* **overhead**: p50/p95 of a forward call with 64 KiB of activations (128 x 128 float32), minus the
  module's own compute time on the same input, measured locally in the same run (the baseline), and
  a bare 64 KiB echo over the same transport (what the transport itself costs);
* **batching**: samples/s of 8 concurrent callers, against a server that merges their requests
  (``max_batch`` 64) and one that computes each alone (``max_batch`` 1, the baseline).

Three processes on loopback, each a peer with its own DHT process and p2p daemon: the caller (this
one) and two servers (children of it, stopped at the end).

    .venv/bin/python scripts/bench/remote.py --calls 300 --seconds 10 --json artifacts/bench/remote.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from swarmnet.identity import Identity
from swarmnet.remote import ClientConfig, HostedModule, ModuleServer, RemoteCaller, ServerConfig
from swarmnet.testing import apoll_until
from swarmnet.transport.base import Transport
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

OVERHEAD_UID, BATCHED_UID, UNBATCHED_UID = "bench.overhead.0", "bench.batched.0", "bench.unbatched.0"
ECHO = "bench.remote.echo"  # the transport baseline: the same bytes, echoed by a bare handler
GOALS = {"overhead_p50_ms": 5.0, "batching_speedup": 1.5}


async def _echo_handler(caller: str, request: bytes) -> bytes:
    return request


def _overhead_block() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(128, 128)


def _batching_block(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


def _local_ms(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


async def _echo(caller_transport: Transport, server: str, request: bytes) -> float:
    start = time.perf_counter()
    await caller_transport.call_unary(server, ECHO, request)
    return 1e3 * (time.perf_counter() - start)


async def _overhead(caller: RemoteCaller, transport: Transport, server: str, calls: int) -> dict[str, float]:
    x = torch.randn(128, 128)  # 64 KiB of float32 activations
    local, raw = _overhead_block(), bytes(x.numel() * 4)
    for _ in range(10):  # warm-up: connections, lookups, first-call allocations
        await caller.forward(OVERHEAD_UID, [x])
        await _echo(transport, server, raw)
    times, computes, echoes = [], [], []
    for _ in range(calls):  # the baselines interleaved with the calls, so all see the same load
        computes.append(_local_ms(local, x, 1))
        echoes.append(await _echo(transport, server, raw))
        start = time.perf_counter()
        await caller.forward(OVERHEAD_UID, [x])
        times.append(1e3 * (time.perf_counter() - start))
    compute_ms, echo_p50 = statistics.median(computes), statistics.median(echoes)
    p50, p95 = _percentile(times, 0.5), _percentile(times, 0.95)
    return {"compute_ms": compute_ms, "call_p50_ms": p50, "call_p95_ms": p95,
            "overhead_p50_ms": p50 - compute_ms, "overhead_p95_ms": p95 - compute_ms,
            "echo_64k_p50_ms": echo_p50, "echo_64k_p95_ms": _percentile(echoes, 0.95),
            "overhead_above_echo_p50_ms": p50 - compute_ms - echo_p50}  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


async def _throughput(caller: RemoteCaller, uid: str, args: argparse.Namespace) -> float:
    callers, samples, seconds = args.callers, args.samples, args.seconds
    x = torch.randn(samples, args.width)
    await caller.forward(uid, [x])  # warm-up
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await caller.forward(uid, [x])
            done += samples

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(callers)))
    return done / (time.perf_counter() - start)


async def _serve(args: argparse.Namespace) -> None:
    """Child process: host the batched (with the overhead module and the echo) or unbatched block until
    stdin closes, then print the batched module's statistics as one JSON line."""
    identity = Identity.generate()
    transport = await HivemindTransport.create(identity, HivemindConfig(initial_peers=tuple(args.initial_peer)))
    try:
        if args.serve == "batched":
            config = ServerConfig(max_batch=64, max_wait=args.max_wait, inline_max_seconds=args.inline)
            hosted = [HostedModule(OVERHEAD_UID, _overhead_block()),
                      HostedModule(BATCHED_UID, _batching_block(args.width))]  # fmt: skip
            await transport.add_unary_handler(ECHO, _echo_handler)
        else:
            config = ServerConfig(max_batch=1, inline_max_seconds=args.inline)
            hosted = [HostedModule(UNBATCHED_UID, _batching_block(args.width))]
        server = ModuleServer(transport, identity, hosted, config)
        await server.start()
        print(json.dumps({"peer_id": identity.peer_id}), flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
        stats = server.statistics().modules[hosted[-1].uid]
        print(json.dumps({"batches": stats.batches, "samples": stats.samples}), flush=True)
        await server.stop()
    finally:
        await transport.shutdown()


def _start_server(kind: str, initial: tuple[str, ...], args: argparse.Namespace) -> subprocess.Popen[str]:
    peers = [flag for address in initial for flag in ("--initial-peer", address)]
    options = ["--width", str(args.width), "--max-wait", str(args.max_wait), "--inline", str(args.inline)]
    command = [sys.executable, __file__, "--serve", kind, *peers, *options, "--threads", str(args.threads)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _stop_server(process: subprocess.Popen[str]) -> dict[str, int]:
    assert process.stdin is not None
    assert process.stdout is not None
    if process.poll() is not None:
        return {}
    try:
        process.stdin.close()
        line = process.stdout.readline()
        process.wait(timeout=60)
        return dict(json.loads(line)) if line else {}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _run(args: argparse.Namespace) -> dict[str, object]:
    identity = Identity.generate()
    transport = await HivemindTransport.create(identity)
    children: list[subprocess.Popen[str]] = []
    try:
        initial = tuple(await transport.visible_addresses())
        children = [_start_server(kind, initial, args) for kind in ("batched", "unbatched")]
        ready = [json.loads(await asyncio.to_thread(child.stdout.readline)) for child in children if child.stdout]
        caller = RemoteCaller(transport, ClientConfig(timeout=30.0))
        for uid in (OVERHEAD_UID, BATCHED_UID, UNBATCHED_UID):
            await apoll_until(lambda u=uid: caller.replicas(u, refresh=True), timeout=60, what=f"{uid}'s record")  # type: ignore[misc]
        overhead = await _overhead(caller, transport, ready[0]["peer_id"], args.calls)
        alone = await _throughput(caller, UNBATCHED_UID, args)
        merged = await _throughput(caller, BATCHED_UID, args)
        stats = _stop_server(children[0])
        batching = {"callers": args.callers, "samples_per_call": args.samples, "unbatched_samples_per_s": alone,
                    "batched_samples_per_s": merged, "speedup": merged / alone,
                    "mean_batch_samples": stats.get("samples", 0) / max(stats.get("batches", 1), 1)}  # fmt: skip
        return {"overhead": overhead, "batching": batching}
    finally:
        for child in children:
            _stop_server(child)
        await transport.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls timed for the overhead")
    parser.add_argument("--callers", type=int, default=8, help="concurrent callers for the batching test")
    parser.add_argument("--samples", type=int, default=16, help="samples per call in the batching test")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each batching run")
    parser.add_argument("--width", type=int, default=256, help="width of the batching test's MLP block")
    parser.add_argument("--max-wait", type=float, default=0.002, help="seconds a batch waits for more requests")
    parser.add_argument("--inline", type=float, default=ServerConfig().inline_max_seconds,
                        help="ServerConfig.inline_max_seconds (0: every batch in a worker thread)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (on a busy CPU, 1 avoids stalls)")
    parser.add_argument("--json", type=Path, default=Path("artifacts/bench/remote.json"))
    parser.add_argument("--serve", choices=["batched", "unbatched"], help=argparse.SUPPRESS)  # a child's role
    parser.add_argument("--initial-peer", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.serve:
        asyncio.run(_serve(args))
        return
    result = asyncio.run(_run(args))
    overhead, batching = result["overhead"], result["batching"]
    assert isinstance(overhead, dict)
    assert isinstance(batching, dict)
    print(f"{'measure':<42} {'value':>10} {'goal':>8}")
    print(f"{'module compute, 128x128 input (ms)':<42} {overhead['compute_ms']:>10.3f} {'':>8}")
    print(f"{'call p50 / p95 (ms)':<42} {overhead['call_p50_ms']:>5.2f}/{overhead['call_p95_ms']:<5.2f}")
    print(f"{'overhead p50 (ms)':<42} {overhead['overhead_p50_ms']:>10.2f} {'<= 5':>8}")
    print(f"{'overhead p95 (ms)':<42} {overhead['overhead_p95_ms']:>10.2f} {'':>8}")
    print(f"{'transport baseline: 64 KiB echo p50 (ms)':<42} {overhead['echo_64k_p50_ms']:>10.2f}")
    print(f"{'overhead above the echo, p50 (ms)':<42} {overhead['overhead_above_echo_p50_ms']:>10.2f}")
    print(f"{'unbatched samples/s (8 callers, max_batch 1)':<42} {batching['unbatched_samples_per_s']:>10.0f}")
    print(f"{'batched samples/s (8 callers, max_batch 64)':<42} {batching['batched_samples_per_s']:>10.0f}")
    print(f"{'mean samples per batched forward':<42} {batching['mean_batch_samples']:>10.1f}")
    print(f"{'batching speed-up':<42} {batching['speedup']:>10.2f} {'>= 1.5':>8}")
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(), "args": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "remote", "meta": meta, "goals": GOALS, **result}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
