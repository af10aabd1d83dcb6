"""Benchmark: does the DiLoCo demo end with every peer on one state while the CPU is busy with other work?

Starts ``--busy`` processes that spin on the CPU (``python -c "while True: pass"``), then runs
``swarmnet demo --peers 2 --preset debug --steps 40 --inner-steps 10`` (or the given demo arguments)
``--runs`` times, one after another, each with its own work directory. Per run, from the demo's output
and its peers' logs: whether the demo printed "identical global parameters ...: yes", how many rounds
ended with fewer contributors than members ("k/n contributed" with k < n), how many chunks a peer
refused, how many state fetches the peers made, and the wall time. The busy processes are stopped at
the end, also on errors or Ctrl+C. A run with ``--busy 0`` in the same invocation is the baseline.

    .venv/bin/python -m scripts.bench.demo_under_load --runs 20 --json artifacts/bench/demo_under_load.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEMO = ["--peers", "2", "--preset", "debug", "--steps", "40", "--inner-steps", "10"]
_PARTIAL = re.compile(r"round (\d+): (\d+)/(\d+) contributed")
_LONE = re.compile(r"round \d+: 1/1 contributed")
_IDENTICAL = "all peers hold identical global parameters and outer momentum: "


def start_busy(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that keep one core each busy until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate, then kill what is left, of the processes we started."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def swarmnet_command() -> list[str]:
    """The installed ``swarmnet`` entry point next to this interpreter, else ``python -m swarmnet``."""
    script = Path(sys.executable).with_name("swarmnet")
    return [str(script)] if script.exists() else [sys.executable, "-m", "swarmnet"]


def one_run(demo: list[str], timeout: float, keep: Path | None = None) -> dict[str, Any]:
    """Run the demo once; what its output and its peers' logs say. ``keep``: move its work directory there
    when the run did not end on one state (its logs explain why)."""
    workdir = Path(tempfile.mkdtemp(prefix="swarmnet-demo-load-"))
    started = time.monotonic()
    try:
        try:
            done = subprocess.run(
                [*swarmnet_command(), "demo", *demo, "--workdir", str(workdir)],
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as e:
            output, code = str(e.stdout or "") + str(e.stderr or ""), -1
        result = {"seconds": time.monotonic() - started, "exit_code": code, **read_logs(output, workdir)}
        if keep is not None and not (result["identical"] and result["partial_rounds"] == 0):
            (workdir / "demo.out").write_text(output)
            keep.mkdir(parents=True, exist_ok=True)
            result["kept"] = str(shutil.move(workdir, keep / workdir.name))
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def read_logs(output: str, workdir: Path) -> dict[str, Any]:
    """Counts from the demo's output and the peers' logs (``peer-*.log``, ``peer-*.json``)."""
    logs = "\n".join(p.read_text(errors="replace") for p in sorted(workdir.glob("peer-*.log")))
    partial = [m.groups() for m in _PARTIAL.finditer(logs) if int(m.group(2)) < int(m.group(3))]
    line = next((x for x in output.splitlines() if x.startswith(_IDENTICAL)), "")
    summaries = [json.loads(p.read_text()) for p in sorted(workdir.glob("peer-*.json"))]
    return {
        "identical": line.removeprefix(_IDENTICAL).startswith("yes"),
        "identical_line": line,
        "partial_rounds": len(partial),
        "partial_round_ids": sorted({int(r) for r, _, _ in partial}),
        # A peer that found nobody else within the trainer's group wait averaged alone: its state then differs.
        "lone_rounds": len(_LONE.findall(logs)),
        "refused_chunks": logs.count("refused a chunk"),
        "state_fetches": sum(s.get("state_fetches", 0) for s in summaries),
        "rounds": [s.get("rounds") for s in summaries],
    }


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    """One line per load level: runs, identical endings, runs with a partial round, refused chunks."""
    print(f"{'busy':>5}{'runs':>6}{'identical':>11}{'runs w/ partial':>17}{'refused chunks':>16}{'median s':>10}")
    for busy, runs in results.items():
        seconds = sorted(r["seconds"] for r in runs)
        print(
            f"{busy:>5}{len(runs):>6}{sum(r['identical'] for r in runs):>11}"
            f"{sum(r['partial_rounds'] > 0 for r in runs):>17}{sum(r['refused_chunks'] for r in runs):>16}"
            f"{seconds[len(seconds) // 2]:>10.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="demo runs under load (default %(default)s)")
    parser.add_argument("--busy", type=int, default=2, help="busy processes during those runs (default %(default)s)")
    parser.add_argument("--baseline-runs", type=int, default=1, help="runs without busy processes first")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one demo run may take")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the logs of runs with a partial round here")
    parser.add_argument("demo", nargs=argparse.REMAINDER, help=f"demo arguments (default: {' '.join(DEMO)})")
    args = parser.parse_args(argv)
    demo = [a for a in args.demo if a != "--"] or DEMO
    results: dict[str, list[dict[str, Any]]] = {}
    for busy, runs in ((0, args.baseline_runs), (args.busy, args.runs)):
        if runs <= 0:
            continue
        label = str(busy)
        busy_processes = start_busy(busy)
        try:
            for index in range(runs):
                run = one_run(demo, args.timeout, args.keep)
                results.setdefault(label, []).append(run)
                print(f"busy {busy} run {index + 1}/{runs}: identical={run['identical']} "
                      f"partial rounds {run['partial_round_ids']} refused chunks {run['refused_chunks']} "
                      f"lone rounds {run['lone_rounds']} fetches {run['state_fetches']} {run['seconds']:.0f}s",
                      flush=True)  # fmt: skip
        finally:
            stop(busy_processes)
    print_table(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"demo": demo, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
