"""How far apart honest reducers' results look to a receiver, on real DiLoCo updates: the margin of
``AveragingConfig.result_tolerance``.

K replicas of the ``debug`` GPT train on their shards of the KJV bytes (``scripts/experiments/simulate.py``:
the library's ``Replica``, H inner steps per sync, each sync applies the median of their pseudo-gradients).
At every sync, for each robust rule, each replica as receiver, and the vector cut into G equal ranges, the
plausibility check's ratio ``q = ||aggregate - own|| / ||own||`` per range (``swarmnet.averaging.plausible``);
printed is the largest ``max(q) / lower median(q)`` over receivers and syncs, per G: an honest range is
refused when this exceeds the tolerance (default 4). About 4 minutes of one core.

    .venv/bin/python -m scripts.bench.averaging_plausibility --json artifacts/bench/averaging_plausibility.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run by path (python scripts/bench/x.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.experiments.diloco import parse_run
from scripts.experiments.simulate import Budget, diloco_config, initial_model, load_data
from swarmnet.averaging.group import partition
from swarmnet.averaging.robust import AggregationConfig, aggregate
from swarmnet.diloco.replica import Replica

RULES = ("median", "trimmed_mean", "centered_clip")
GROUPS = (3, 5, 8, 16)


def spreads(updates: torch.Tensor) -> dict[str, dict[int, float]]:
    """Per rule and range count: the largest ``max(q) / lower median(q)`` over the receivers."""
    k, n = updates.shape
    out: dict[str, dict[int, float]] = {}
    for rule in RULES:
        result = aggregate(updates, torch.ones(k), AggregationConfig(rule=rule))  # type: ignore[arg-type]
        out[rule] = {}
        for groups in GROUPS:
            worst = 0.0
            for own in updates:
                q = sorted(
                    float((result[a:b] - own[a:b]).norm() / own[a:b].norm()) for a, b in partition(n, [1.0] * groups)
                )
                worst = max(worst, q[-1] / q[(len(q) - 1) // 2])
            out[rule][groups] = worst
    return out


def measure(replicas: int, inner_steps: int, syncs: int) -> list[dict[str, Any]]:
    budget = Budget(steps=inner_steps * syncs, replicas=replicas)
    data = load_data(budget)
    config = diloco_config(parse_run(f"diloco_h{inner_steps}"), budget)
    base = initial_model(budget)
    models = [Replica(copy.deepcopy(base), config) for _ in range(replicas)]
    samplers = [data.sampler(k, replicas) for k in range(replicas)]
    rows = []
    for step in range(1, budget.steps + 1):
        for replica, sampler in zip(models, samplers, strict=True):
            replica.inner_step(sampler.batch(replica.step))
        if config.syncs_after(step):
            updates = torch.stack([r.pseudo_gradient(0).clone() for r in models])
            rows.append({"step": step, "spread": spreads(updates)})
            median = aggregate(updates, torch.ones(replicas), AggregationConfig(rule="median"))
            for replica in models:
                replica.apply_outer(median, 0)
            print(f"sync at step {step}: {rows[-1]['spread']}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Measure, print the worst spread per range count, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=5)
    parser.add_argument("--inner-steps", type=int, default=50)
    parser.add_argument("--syncs", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.replicas, args.inner_steps, args.syncs)
    worst = {g: max(row["spread"][rule][g] for row in rows for rule in RULES) for g in GROUPS}
    print("ranges  worst max(q) / lower median(q) over rules, receivers and syncs")
    for groups, value in worst.items():
        print(f"{groups:>6}  {value:.2f}")
    if args.json is not None:
        report = {"replicas": args.replicas, "inner_steps": args.inner_steps, "worst": worst, "syncs": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
