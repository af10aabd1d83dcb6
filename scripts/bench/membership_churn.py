"""Benchmark: membership under churn on the in-memory transport, in virtual time.

Prints a table and writes JSON (default artifacts/bench/membership_churn.json). Each row is one
simulated swarm: peers join over 300 virtual seconds, stay an exponential time (mean 200 s),
then half leave cleanly and half die; an observer checks the listing every 10 virtual seconds.

    .venv/bin/python scripts/bench/membership_churn.py --peers 1000 2000 5000
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

from swarmnet.testing import ChurnConfig, simulate_churn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/membership_churn.json"))
    args = parser.parse_args()
    rows = []
    header = f"{'peers':>6} {'joins':>6} {'leaves':>6} {'deaths':>6} {'max listed':>10} {'errors':>6} "
    print(header + f"{'virtual s':>9} {'wall s':>7} {'speed-up':>8}")
    for peers in args.peers:
        report = simulate_churn(ChurnConfig(peers=peers, seed=args.seed))
        errors = report.missing + report.stale_clean + report.stale_dead
        speedup = report.virtual_seconds / report.wall_seconds
        print(
            f"{report.peers:>6} {report.joins:>6} {report.clean_leaves:>6} {report.deaths:>6} {report.max_listed:>10} "
            f"{errors:>6} {report.virtual_seconds:>9.0f} {report.wall_seconds:>7.1f} {speedup:>7.0f}x"
        )
        rows.append({**asdict(report), "listing_errors": errors})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version()}
    args.out.write_text(json.dumps({"benchmark": "membership_churn", "meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
