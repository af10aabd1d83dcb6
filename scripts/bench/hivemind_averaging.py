"""Benchmark baseline: hivemind's DecentralizedAverager (fp16) among peers in shaped network namespaces.

Each peer is its own process in its own testbed namespace (scripts/testbed.py) and averages one fp32 tensor
of ``numel`` elements with hivemind 1.1.12's ``DecentralizedAverager`` and ``Float16Compression``. Rounds
start at a shared wall-clock moment written by the coordinator; every peer calls
``step(wait=False, require_trigger=True)``, waits until the group is formed (stage AWAITING_TRIGGER), then
triggers the all-reduce at once, so each round splits into matchmaking and data phases. Peer i starts round
r with ``pattern + i + 1 + r % 4``; after it every peer must hold ``pattern + (N + 1) / 2 + r % 4``.

Needs root (namespaces). Prints a table and optionally writes JSON:

    .venv/bin/python -m scripts.bench.hivemind_averaging --numel 25000000 --rounds 3 --rate-mbit 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by path (python scripts/bench/x.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.rounds import checks_after, cpu_ticks, tail, wait_for, write_atomic
from scripts.bench.rounds import pattern as make_pattern
from scripts.testbed import Node, Testbed, TestbedConfig, testbed, testbed_unavailable

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "bench"
# Chosen following hivemind's docs: full group of all peers, request_timeout below min_matchmaking_time, no
# state sharing (no DHT declarations in the background), default part size, generous all-reduce timeout.
DEFAULT_SETTINGS: dict[str, Any] = {
    "compression": "Float16Compression",
    "min_matchmaking_time": 1.0,
    "request_timeout": 0.5,
    "part_size_bytes": 2**19,
    "allreduce_timeout": 300.0,
    "matchmaking_timeout": 60.0,
    "allow_state_sharing": False,
    "bandwidth": None,
    # step(require_trigger=True); trigger as soon as the stage shows the group formed (polled this often).
    # False: a plain step(), for checking that splitting the phases does not slow the round down.
    "split_phases": True,
    "trigger_poll_seconds": 0.002,
    "OMP_NUM_THREADS": 1,
}


def run_peer(
    index: int, peers: int, ip: str, numel: int, rounds: int, workdir: Path, settings: dict[str, Any]
) -> None:
    """One peer: join the DHT, then run ``rounds`` synchronized averaging steps, writing a result file per round."""
    import hivemind
    from hivemind.averaging.control import AveragingStage
    from hivemind.compression import Float16Compression

    deadline = time.monotonic() + settings["matchmaking_timeout"] + 120
    initial_peers = [] if index == 0 else json.loads(wait_for(workdir / "maddrs.json", deadline))
    dht = hivemind.DHT(start=True, host_maddrs=[f"/ip4/{ip}/tcp/0"], initial_peers=initial_peers)
    averager = None
    try:
        if index == 0:
            write_atomic(workdir / "maddrs.json", json.dumps([str(a) for a in dht.get_visible_maddrs()]))
        pattern = make_pattern(numel)
        averager = hivemind.DecentralizedAverager(
            [pattern + index + 1],
            dht,
            start=True,
            prefix=PREFIX,
            target_group_size=peers,
            min_group_size=peers,
            min_matchmaking_time=settings["min_matchmaking_time"],
            request_timeout=settings["request_timeout"],
            part_size_bytes=settings["part_size_bytes"],
            allreduce_timeout=settings["allreduce_timeout"],
            compression=Float16Compression(),
            allow_state_sharing=settings["allow_state_sharing"],
            bandwidth=settings["bandwidth"],
        )
        for r in range(rounds):
            with averager.get_tensors() as tensors:
                tensors[0].copy_(pattern + index + 1 + r % 4)
            (workdir / f"ready-{r}-{index}").touch()
            start = float(wait_for(workdir / f"start-{r}", time.monotonic() + 300))
            time.sleep(max(0.0, start - time.time()))
            t_step = time.time()
            split = settings["split_phases"]
            control = averager.step(wait=False, require_trigger=split, timeout=settings["matchmaking_timeout"])
            while split and control.stage in (AveragingStage.IDLE, AveragingStage.LOOKING_FOR_GROUP):
                if control.done():
                    break
                time.sleep(settings["trigger_poll_seconds"])
            t_formed = time.time() if split else t_step
            if split:
                control.allow_allreduce()
            error: str | None = None
            group_size = 0
            try:
                group_size = len(control.result(timeout=settings["allreduce_timeout"] + 10))
            except Exception as e:
                error = repr(e)
            t_done = time.time()
            result: dict[str, Any] = {
                "peer": index,
                "start": start,
                "step": t_step,
                "formed": t_formed,
                "done": t_done,
            }
            result |= {"group_size": group_size, "error": error}
            write_atomic(workdir / f"result-{r}-{index}.json", json.dumps(result))
            wait_for(workdir / f"over-{r}", time.monotonic() + 300)  # see rounds.checks_after
            with averager.get_tensors() as tensors:
                max_error = float((tensors[0] - (pattern + (peers + 1) / 2 + r % 4)).abs().max())
            write_atomic(workdir / f"check-{r}-{index}.json", json.dumps({"max_abs_error": max_error}))
        wait_for(workdir / "stop", time.monotonic() + 300)
    finally:
        if averager is not None:
            averager.shutdown()
        dht.shutdown()


def run_hivemind_baseline(
    bed: Testbed,
    numel: int,
    rounds: int,
    *,
    warmup_rounds: int = 1,
    settings: dict[str, Any] | None = None,
    tolerance: float = 1e-2,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Average a ``numel``-element fp32 tensor among all testbed nodes ``warmup_rounds + rounds`` times.

    Returns medians over the measured rounds: ``seconds`` (whole round from the shared start, matchmaking
    included, until the last peer is done), ``data_seconds`` (from the first peer seeing its group formed to
    the last peer done), ``bytes_per_peer`` (veth tx bytes per peer per round); ``rounds`` holds per-round,
    per-peer raw numbers and ``settings`` every hivemind setting used. ``incomplete_results`` counts peer
    results that differ from the exact average by more than ``tolerance`` or came from a smaller group.
    """
    settings = DEFAULT_SETTINGS | (settings or {})
    peers, total = len(bed.nodes), warmup_rounds + rounds
    with tempfile.TemporaryDirectory(prefix="hm-avg-") as tmp:
        workdir = Path(tmp)
        logs = log_dir or workdir
        procs = [
            _start_peer(node, i, peers, numel, total, workdir, settings, logs) for i, node in enumerate(bed.nodes)
        ]
        try:
            raw = [_run_round(r, bed.nodes, procs, workdir, settings, r < warmup_rounds) for r in range(total)]
            (workdir / "stop").touch()
            for proc in procs:
                proc.wait(timeout=30)
        except Exception as e:
            tails = "\n".join(tail(logs / f"peer-{i}.log") for i in range(peers))
            raise RuntimeError(f"hivemind baseline failed: {e}\n{tails}") from e
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    failures = [(rd["round"], p) for rd in raw for p in rd["peers"] if p["error"] or p["max_abs_error"] > tolerance]
    failures += [(rd["round"], p) for rd in raw for p in rd["peers"] if p["group_size"] != peers]
    if failures:
        # hivemind keeps a part at its local value when a sender misses the deadline: that is its
        # behaviour, not a harness fault, so it is reported (and counted) rather than raised.
        print(f"hivemind: {len(failures)} wrong or incomplete peer results: {failures}", file=sys.stderr)
    measured = [rd for rd in raw if not rd["warmup"]]
    return {
        "seconds": statistics.median(rd["seconds"] for rd in measured),
        "data_seconds": statistics.median(rd["data_seconds"] for rd in measured),
        "bytes_per_peer": statistics.median(b for rd in measured for b in rd["tx_bytes"]),
        "peers": peers,
        "numel": numel,
        "rate_mbit": bed.config.rate_mbit,
        "rounds": raw,
        "incomplete_results": len(failures),
        "settings": {**settings, "target_group_size": peers, "min_group_size": peers, "prefix": PREFIX},
    }


def _start_peer(
    node: Node, index: int, peers: int, numel: int, rounds: int, workdir: Path, settings: dict[str, Any], logs: Path
) -> subprocess.Popen[Any]:
    # One torch thread per peer: several peers share this machine's cores, and oversubscribed OpenMP
    # threads spin-wait at their barriers; swarmnet's peers get the same setting.
    argv = ["env", "OMP_NUM_THREADS=1", sys.executable, "-m", "scripts.bench.hivemind_averaging", "peer"]
    argv += ["--index", str(index)]
    argv += ["--peers", str(peers), "--ip", node.ip, "--numel", str(numel), "--rounds", str(rounds)]
    argv += ["--dir", str(workdir), "--settings", json.dumps(settings)]
    with (logs / f"peer-{index}.log").open("w") as log:
        return node.popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _run_round(
    r: int, nodes: list[Node], procs: list[subprocess.Popen[Any]], workdir: Path, settings: dict[str, Any], warm: bool
) -> dict[str, Any]:
    deadline = time.monotonic() + settings["matchmaking_timeout"] + 180
    for i in range(len(nodes)):
        wait_for(workdir / f"ready-{r}-{i}", deadline, procs)
    tx_before = [node.tx_bytes() for node in nodes]
    cpu_before = cpu_ticks()
    start = time.time() + 0.25
    write_atomic(workdir / f"start-{r}", repr(start))
    results = [json.loads(wait_for(workdir / f"result-{r}-{i}.json", deadline, procs)) for i in range(len(nodes))]
    cpu_after = cpu_ticks()
    tx = [node.tx_bytes() - before for node, before in zip(nodes, tx_before, strict=True)]
    checks = checks_after(workdir, str(r), list(range(len(nodes))), deadline, procs)
    results = [p | check for p, check in zip(results, checks, strict=True)]
    return {
        "round": r,
        "warmup": warm,
        "seconds": max(p["done"] for p in results) - start,
        "matchmaking_seconds": max(p["formed"] for p in results) - start,
        "data_seconds": max(p["done"] for p in results) - min(p["formed"] for p in results),
        "tx_bytes": tx,
        "cpu_busy": (cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1]),
        "peers": [{**p, "whole_seconds": p["done"] - start, "data_seconds": p["done"] - p["formed"]} for p in results],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``peer`` (internal, one averaging peer) or the benchmark itself."""
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["peer"]:
        p = argparse.ArgumentParser(prog="hivemind_averaging peer")
        for name in ("--index", "--peers", "--numel", "--rounds"):
            p.add_argument(name, type=int, required=True)
        p.add_argument("--ip", required=True)
        p.add_argument("--dir", type=Path, required=True)
        p.add_argument("--settings", type=json.loads, required=True)
        a = p.parse_args(args_list[1:])
        run_peer(a.index, a.peers, a.ip, a.numel, a.rounds, a.dir, a.settings)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numel", type=int, default=25_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--rate-mbit", type=float, default=100.0, help="per-link rate each way; 0: unshaped")
    parser.add_argument("--min-matchmaking-time", type=float, default=DEFAULT_SETTINGS["min_matchmaking_time"])
    parser.add_argument("--request-timeout", type=float, default=DEFAULT_SETTINGS["request_timeout"])
    parser.add_argument("--no-split", action="store_true", help="plain step(): no separate data-phase timing")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(args_list)
    if (reason := testbed_unavailable()) is not None:
        print(f"testbed unavailable: {reason}", file=sys.stderr)
        return 1
    overrides = {"min_matchmaking_time": args.min_matchmaking_time, "request_timeout": args.request_timeout}
    overrides["split_phases"] = not args.no_split
    with testbed(TestbedConfig(peers=args.peers, rate_mbit=args.rate_mbit or None)) as bed:
        report = run_hivemind_baseline(bed, args.numel, args.rounds, warmup_rounds=args.warmup, settings=overrides)
    print(
        f"{'round':>5} {'whole s':>8} {'match s':>8} {'data s':>7} {'MB sent/peer':>12} {'cpu busy':>8} {'max err':>8}"
    )
    for rd in report["rounds"]:
        label = f"{rd['round']}{'w' if rd['warmup'] else ''}"
        err = max(p["max_abs_error"] for p in rd["peers"])
        print(
            f"{label:>5} {rd['seconds']:>8.2f} {rd['matchmaking_seconds']:>8.2f} {rd['data_seconds']:>7.2f} "
            f"{statistics.median(rd['tx_bytes']) / 1e6:>12.1f} {rd['cpu_busy']:>8.0%} {err:>8.1e}"
        )
    wire = f" (wire-bound {report['bytes_per_peer'] * 8 / (args.rate_mbit * 1e6):.2f} s)" if args.rate_mbit else ""
    print(
        f"median: whole {report['seconds']:.2f} s, data {report['data_seconds']:.2f} s, "
        f"{report['bytes_per_peer'] / 1e6:.1f} MB sent/peer{wire}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "hivemind_averaging", **report}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
