"""Benchmark: one of four peers dies mid-round; the others must finish with the exact average of the three.

Each peer is a process in its own network namespace (``scripts/testbed.py``, links shaped to ``--rate-mbit``),
averaging ``--numel`` float32 values with the ``none`` codec. Peer 2 SIGKILLs itself as soon as its first
part is on the wire. Per run: the round's wall time (shared start to the last survivor done), the deadline a
reducer sets for its parts from the three others (what the round would cost if the death went unnoticed),
the survivors' max error against the exact average of the three, the time they spent reducing the dead
peer's range again (``Outcome.phase_seconds["recovery"]``), and whether every survivor named the dead peer,
and only it, in ``Outcome.failed``. Fresh processes per run. Needs root.

    .venv/bin/python -m scripts.bench.averaging_failure --json artifacts/bench/averaging_failure.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by path (python scripts/bench/x.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.swarmnet_averaging import run_swarmnet
from scripts.testbed import TestbedConfig, testbed, testbed_unavailable

PEERS, VICTIM = 4, 2


def summarize(report: dict[str, Any], numel: int, rate_mbit: float) -> dict[str, Any]:
    """The figures of one run, from ``run_swarmnet``'s report."""
    from swarmnet.averaging import DeadlineConfig
    from swarmnet.averaging.deadlines import ThroughputModel

    result = report["none"]
    survivors = result["rounds"][0]["peers"]
    alive = {p["peer_id"] for p in survivors}
    named = [set(p["failed"]) for p in survivors]
    return {
        "seconds": result["seconds"],
        "deadline_seconds": ThroughputModel(DeadlineConfig(), rate_mbit).timeout((PEERS - 1) * numel / PEERS * 4),
        "max_abs_error": result["max_abs_error"],
        "recovery_seconds": max(p["phases"].get("recovery", 0.0) for p in survivors),
        "contributors": sorted({p["contributors"] for p in survivors}),
        "dead_peer_named_by_all": all(len(n) == 1 and not n & alive for n in named) and len(set.union(*named)) == 1,
        "survivors": [{k: p[k] for k in ("peer", "succeeded", "contributors", "failed", "phases")} for p in survivors],
    }


def main(argv: list[str] | None = None) -> int:
    """Run, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numel", type=int, default=5_000_000, help="values averaged (default: 20 MB of float32)")
    parser.add_argument("--rate-mbit", type=float, default=100.0)
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3, help="each with fresh peer processes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if (reason := testbed_unavailable()) is not None:
        print(f"testbed unavailable: {reason}", file=sys.stderr)
        return 1
    burst = max(TestbedConfig.burst_kbit, 160 if args.mtu > 1500 else 0)
    load = os.getloadavg()[0]  # the machine's 1-minute load before the run: timings on a busy box run long
    runs = []
    with testbed(
        TestbedConfig(peers=PEERS, rate_mbit=args.rate_mbit, prefix="avf", mtu=args.mtu, burst_kbit=burst)
    ) as bed:
        for _ in range(args.runs):
            report = run_swarmnet(bed.nodes, args.numel, 1, ["none"], warmup_rounds=0, rate_mbit=args.rate_mbit,
                                  victim=VICTIM)  # fmt: skip
            runs.append(summarize(report, args.numel, args.rate_mbit))
    print(f"{PEERS} peers, peer {VICTIM} killed after its first part; {args.numel * 4 / 1e6:.0f} MB fp32, "
          f"{args.rate_mbit:.0f} Mbit/s links, MTU {args.mtu}, load average {load:.1f} before")  # fmt: skip
    columns = f"{'run':>4}{'round s':>9}{'deadline s':>12}{'recovery s':>12}{'max error':>11}{'contributors':>14}"
    print(f"{columns}  dead peer named")
    for i, run in enumerate(runs):
        print(f"{i:>4}{run['seconds']:>9.2f}{run['deadline_seconds']:>12.2f}{run['recovery_seconds']:>12.2f}"
              f"{run['max_abs_error']:>11.2g}{','.join(map(str, run['contributors'])):>14}  "
              f"{run['dead_peer_named_by_all']}")  # fmt: skip
    summary = {
        "peers": PEERS, "victim": VICTIM, "numel": args.numel, "link_mbit": args.rate_mbit, "mtu": args.mtu,
        "load_average_before": load,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_recovery_seconds": statistics.median(r["recovery_seconds"] for r in runs),
        "max_abs_error": max(r["max_abs_error"] for r in runs), "runs": runs,
    }  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
