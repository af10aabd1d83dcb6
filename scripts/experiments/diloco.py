"""DiLoCo vs DDP at small scale: K replicas, one token budget, bytes each replica sends.

Reproduces the comparison of the DiLoCo papers (DiLoCo, Streaming DiLoCo) on a CPU: a byte-level GPT
(preset ``debug``, 0.84M parameters) trained on the KJV Bible by K = 4 replicas simulated in one process
(``simulate.py``: the library's ``Replica`` and codecs, only the network is simulated). Every method
gets the same inner steps per replica, so the same tokens, except ``single``: one replica alone on its
quarter of the tokens.

Run names say what they run: ``ddp``, ``single``, ``diloco_h{H}[_{codec}][_ef|_noef]`` and
``streaming_h{H}_p{P}[_t{tau}][_m{alpha}][_{codec}]``; ``_lr{x}`` and ``_olr{x}`` (before the codec) set the
inner (or DDP) and outer learning rates. Lossy codecs use error feedback unless ``_noef``.

    .venv/bin/python -m scripts.experiments.diloco                   # the comparison (2 runs at a time)
    .venv/bin/python -m scripts.experiments.diloco --long            # ddp and diloco_h50 at 4x the tokens
    .venv/bin/python -m scripts.experiments.diloco --sweep           # DDP learning rates
    .venv/bin/python -m scripts.experiments.diloco --runs streaming_h50_p4 --merge   # add runs to the JSON

Writes JSON (``--json``), the markdown table (``--md``) and a plot (``--plot``); defaults are under
``artifacts/experiments/`` (``diloco``, ``diloco_long`` or ``diloco_sweep``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from swarmnet.compression import codec_names

if not __package__:  # run as a file (python scripts/experiments/diloco.py): make ``scripts`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.experiments.simulate import METHODS, Budget, RunSpec, load_data, simulate

DDP_LR = 6e-3  # best of SWEEP_LRS (artifacts/experiments/diloco_sweep.json)
INNER_LR = 3e-3  # DiLoCo inner AdamW and the lone worker (calibrated: 3e-3 beat 6e-3 for DiLoCo H=50)
SWEEP_LRS = (1e-3, 3e-3, 6e-3, 1e-2)
DEFAULT_RUNS = (
    "ddp",
    "diloco_h10",
    "diloco_h50",
    "diloco_h100",
    "diloco_h50_int4",
    "diloco_h50_sign1bit_ef",
    "diloco_h50_topk1pct_ef",
    "streaming_h50_p4_int4",
    "single",
)
LONG_RUNS = ("ddp", "diloco_h50")
LONG_FACTOR = 4
STREAMING_OVERLAP, STREAMING_MIXING = 5, 0.5
OUT = Path("artifacts/experiments")
_KNOB = re.compile(r"^(olr|lr|h|p|t|m)(\d[\d.e+-]*)$")


def parse_run(name: str, *, ddp_lr: float = DDP_LR) -> RunSpec:
    """The ``RunSpec`` a run name describes (see the module docstring); ``ValueError`` if malformed."""
    method, *tokens = name.split("_")
    if method not in METHODS:
        raise ValueError(f"run {name!r}: method must be one of {', '.join(METHODS)}")
    knobs: dict[str, str] = {}
    while tokens and (match := _KNOB.match(tokens[0])):
        knobs[match[1]] = match[2]
        tokens.pop(0)
    feedback = tokens.pop() == "ef" if tokens and tokens[-1] in ("ef", "noef") else None
    codec = "_".join(tokens) or "none"
    if codec not in codec_names():
        raise ValueError(f"run {name!r}: unknown codec {codec!r}; known: {', '.join(codec_names())}")
    if feedback and codec == "none":
        raise ValueError(f"run {name!r}: error feedback needs a lossy codec")
    needed = {"diloco": {"h"}, "streaming": {"h", "p"}}.get(method, set())
    allowed = needed | {"lr"} | ({"olr"} if needed else set()) | ({"t", "m"} if method == "streaming" else set())
    if not needed <= set(knobs) <= allowed:
        raise ValueError(f"run {name!r}: {method} needs {sorted(needed)} and allows {sorted(allowed)}")
    streaming = method == "streaming"
    return RunSpec(
        name=name,
        method=method,
        inner_steps=int(knobs["h"]) if "h" in knobs else None,
        fragments=int(knobs["p"]) if "p" in knobs else None,
        overlap_steps=int(knobs.get("t", STREAMING_OVERLAP)) if streaming else 0,
        mixing=float(knobs.get("m", STREAMING_MIXING)) if streaming else 0.0,
        codec=codec,
        error_feedback=codec != "none" if feedback is None else feedback,
        lr=float(knobs.get("lr", ddp_lr if method == "ddp" else INNER_LR)),
        outer_lr=float(knobs.get("olr", 0.7)),
    )


def run_each(
    names: Sequence[str], budget: Budget, *, ddp_lr: float, jobs: int = 1, threads: int = 1
) -> Iterator[dict[str, Any]]:
    """Simulate every named run, ``jobs`` at a time in worker processes (one run in-process when ``jobs`` is 1),
    printing a line per run; results come in the order the runs finish."""
    specs = [parse_run(name, ddp_lr=ddp_lr) for name in names]  # all names checked before any run starts
    if not specs:
        return
    if jobs <= 1:
        data = load_data(budget)
        for spec in specs:
            yield _finished(_simulate_one(spec, budget, data))
        return
    # Runs are independent, and the small model uses a second core better as a second run than as a
    # second intra-op thread; spawn keeps the workers free of the parent's torch thread state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(_simulate_one, spec, budget, None) for spec in specs]
        for future in as_completed(futures):
            yield _finished(future.result())


def _simulate_one(spec: RunSpec, budget: Budget, data: Any) -> dict[str, Any]:
    """One run's result dict (loads the data itself when ``data`` is None: worker processes)."""
    data = load_data(budget) if data is None else data
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # torch's lazy imports, kept out of the wall time
    return {**asdict(simulate(spec, budget, data)), "threads": torch.get_num_threads()}


def _finished(result: dict[str, Any]) -> dict[str, Any]:
    print(f"{result['name']}: val {result['val_loss']:.4f}, {result['wall_s']:.0f} s", flush=True)
    return result


def reference(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The DDP run gaps are measured against: the one named ``ddp``, else the best DDP run."""
    ddp = [r for r in runs if r["method"] == "ddp"]
    named = [r for r in ddp if r["name"] == "ddp"]
    return named[0] if named else min(ddp, key=lambda r: r["val_loss"], default=None)


def table(runs: Sequence[dict[str, Any]]) -> str:
    """The markdown table of the runs."""
    ref = reference(runs)
    head = "| name | method | H | codec | fragments | tokens | val loss | gap vs ddp | bytes/replica | ddp/run bytes "
    lines = [head + "| peak sync bytes | wall s |", "|" + "---|" * 12]
    for r in runs:
        codec = r["codec"] + ("+EF" if r["error_feedback"] else "")
        gap = f"{100 * (r['val_loss'] / ref['val_loss'] - 1):+.1f}%" if ref else "-"
        ratio = f"{ref['bytes_per_replica'] / r['bytes_per_replica']:.0f}x" if ref and r["syncs"] else "-"
        cells = [r["name"], r["method"], _dash(r["H"]), codec, _dash(r["fragments"]), f"{r['tokens'] / 1e6:.2f}M"]
        cells += [f"{r['val_loss']:.4f}", gap, _mb(r["bytes_per_replica"]), ratio, _mb(r["peak_sync_bytes"])]
        lines.append("| " + " | ".join([*cells, f"{r['wall_s']:.0f}"]) + " |")
    return "\n".join(lines)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _mb(count: float) -> str:
    return f"{count / 1e6:.3f} MB" if count else "0"


def targets(runs: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The papers' claims checked on these runs (only those whose runs are present)."""
    by = {r["name"]: r for r in runs}
    found: list[dict[str, Any]] = []

    def check(claim: str, holds: bool, detail: str) -> None:
        found.append({"target": claim, "holds": holds, "detail": detail})

    ref, q4, fp = reference(runs), by.get("diloco_h50_int4"), by.get("diloco_h50")
    if ref and q4:
        ratio = ref["bytes_per_replica"] / q4["bytes_per_replica"]
        check("diloco_h50_int4 sends >= 300x fewer bytes than ddp", ratio >= 300, f"{ratio:.1f}x")
    if q4 and fp:
        rel = q4["val_loss"] / fp["val_loss"] - 1
        check("diloco_h50_int4 within 1% of diloco_h50 (at most 1% worse)", rel <= 0.01, f"{100 * rel:+.2f}%")
    if q4 and "single" in by:
        check("diloco_h50_int4 below single", q4["val_loss"] < by["single"]["val_loss"], _vs(q4, by["single"]))
    for r in runs:
        twin = by.get(f"diloco_h{r['H']}" + ("" if r["codec"] == "none" else f"_{r['codec']}"))
        if r["method"] == "streaming" and twin:
            fold, parts = twin["peak_sync_bytes"] / r["peak_sync_bytes"], r["fragments"]
            # Each fragment's payload carries its own wire header (and block scales), so P-fold means to 1%.
            claim = f"{r['name']}: peak sync P-fold below {twin['name']} (to 1%: headers)"
            check(claim, fold >= 0.99 * parts, f"{fold:.3f}x, P = {parts}")
            rel = r["val_loss"] / twin["val_loss"] - 1
            check(f"{r['name']}: within 1% of {twin['name']} (at most 1% worse)", rel <= 0.01, f"{100 * rel:+.2f}%")
    gaps = [_gap(group, "diloco_h50") for group in (baseline, runs)]
    if baseline and None not in gaps:
        detail = f"{100 * gaps[0]:+.1f}% at 1x -> {100 * gaps[1]:+.1f}% at {LONG_FACTOR}x"  # type: ignore[operator]
        check("gap diloco_h50 vs ddp smaller at 4x budget", gaps[1] < gaps[0], detail)  # type: ignore[operator]
    return found


def _vs(a: dict[str, Any], b: dict[str, Any]) -> str:
    return f"{a['val_loss']:.4f} vs {b['val_loss']:.4f}"


def _gap(runs: Sequence[dict[str, Any]], name: str) -> float | None:
    ref, run = reference(runs), next((r for r in runs if r["name"] == name), None)
    return None if ref is None or run is None else float(run["val_loss"] / ref["val_loss"] - 1)


def markdown(report: dict[str, Any]) -> str:
    """The whole report as markdown: settings, table, targets, sweep."""
    s = report["settings"]
    lines = [
        "# DiLoCo vs DDP (simulated replicas)",
        "",
        f"preset {s['preset']} ({report['runs'][0]['params']:,} params), K = {s['replicas']}, "
        f"{s['steps']} inner steps per replica, batch {s['batch_size']}, corpus {s['corpus']}, "
        f"{s.get('jobs', 1)} runs at a time x {s['threads']} threads; runs took {report['wall_s']:.0f} s in all"
        + (f", {s['elapsed_s']:.0f} s wall clock. " if "elapsed_s" in s else ". ")
        + "Bytes per replica = 2(K-1)/K x payload per sync.",
        "",
        table(report["runs"]),
    ]
    if report["targets"]:
        lines += ["", "## Targets", ""]
        lines += [f"- {'holds' if t['holds'] else 'FAILS'}: {t['target']} ({t['detail']})" for t in report["targets"]]
    if "sweep" in report:
        sweep = report["sweep"]
        lines += ["", f"DDP lr sweep (val loss by lr): {sweep['val_loss']}, best lr {sweep['best_lr']}"]
    return "\n".join(lines) + "\n"


def plot(runs: Sequence[dict[str, Any]], path: Path) -> None:
    """Final val loss vs bytes per replica (log x), and the loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for r in runs:
        if r["bytes_per_replica"]:
            left.scatter(r["bytes_per_replica"], r["val_loss"])
            left.annotate(r["name"], (r["bytes_per_replica"], r["val_loss"]), fontsize=7, xytext=(4, 2),
                          textcoords="offset points")  # fmt: skip
        else:
            left.axhline(r["val_loss"], linestyle="--", color="gray", label=f"{r['name']} (no communication)")
        right.plot(*zip(*r["curve"], strict=True), marker=".", label=r["name"])
    left.set(xscale="log", xlabel="bytes sent per replica", ylabel="final val loss (nats/byte)")
    right.set(xlabel="tokens (all replicas)", ylabel="val loss (nats/byte)")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="output JSON (default by mode, under artifacts/experiments/)")
    parser.add_argument("--md", type=Path, help="markdown table (default: the JSON path with .md)")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: the JSON path with .png)")
    parser.add_argument("--runs", help="comma-separated run names (default: the comparison, or LONG_RUNS with --long)")
    parser.add_argument("--long", action="store_true", help=f"{LONG_FACTOR}x the steps; ddp and diloco_h50 by default")
    parser.add_argument("--sweep", action="store_true", help=f"DDP at each lr of {SWEEP_LRS} (instead of --runs)")
    parser.add_argument("--baseline", type=Path, default=OUT / "diloco.json", help="1x JSON the --long gap compares")
    parser.add_argument("--merge", action="store_true", help="keep the runs already in --json (replaced by name)")
    parser.add_argument("--resume", action="store_true", help="like --merge, but skip the runs --json already has")
    parser.add_argument("--render", action="store_true", help="run nothing: redo targets, markdown and plot of --json")
    parser.add_argument("--steps", type=int, default=600, help="inner steps per replica (before --long)")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--preset", default="debug")
    parser.add_argument("--corpus", default="kjv")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--curve-points", type=int, default=6)
    parser.add_argument("--ddp-lr", type=float, default=DDP_LR)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, each in its own process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation (data and validation stay fixed)")
    return parser.parse_args(argv)


def _names(args: argparse.Namespace) -> list[str]:
    if args.sweep:
        return [f"ddp_lr{lr:g}" for lr in SWEEP_LRS]
    if args.runs:
        return [n.strip() for n in args.runs.split(",") if n.strip()]
    return list(LONG_RUNS if args.long else DEFAULT_RUNS)


def _sweep(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    losses = {f"{r['lr']:g}": r["val_loss"] for r in runs}
    best = min(runs, key=lambda r: r["val_loss"], default=None)
    return {"val_loss": losses, "best_lr": None if best is None else best["lr"]}


def _load_runs(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["runs"]) if path.exists() else []


def main(argv: Sequence[str] | None = None) -> int:
    """Run; after every run rewrite the JSON and the markdown (so an interrupted run keeps what it did); then
    print the table and draw the plot."""
    args = _arguments(argv)
    torch.set_num_threads(args.threads)
    mode = "diloco_sweep" if args.sweep else "diloco_long" if args.long else "diloco"
    out = args.json or OUT / f"{mode}.json"
    budget = Budget(steps=args.steps * (LONG_FACTOR if args.long else 1), replicas=args.replicas,
                    preset=args.preset, corpus=args.corpus, batch_size=args.batch_size,
                    curve_points=args.curve_points, seed=args.seed)  # fmt: skip
    settings = {**asdict(budget), "threads": args.threads, "jobs": args.jobs, "ddp_lr": args.ddp_lr,
                "inner_lr": INNER_LR}  # fmt: skip
    baseline = _load_runs(args.baseline) if args.long else []
    runs = _load_runs(out) if args.merge or args.resume or args.render else []
    done = {r["name"] for r in runs} if args.resume else set()
    names = [] if args.render else [n for n in _names(args) if n not in done]
    report = _report(settings, runs, baseline, sweep=args.sweep)
    started, kept = time.monotonic(), {r["name"] for r in runs}
    for result in run_each(names, budget, ddp_lr=args.ddp_lr, jobs=args.jobs, threads=args.threads):
        runs = _ordered(_replace_run(runs, result), names, kept)
        settings["elapsed_s"] = round(time.monotonic() - started, 1)  # wall clock of this invocation
        report = _report(settings, runs, baseline, sweep=args.sweep)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        (args.md or out.with_suffix(".md")).write_text(markdown(report))
    if args.render:
        report["settings"] = json.loads(out.read_text())["settings"]
        out.write_text(json.dumps(report, indent=1) + "\n")
        (args.md or out.with_suffix(".md")).write_text(markdown(report))
    print(markdown(report))
    plot(runs, args.plot or out.with_suffix(".png"))
    return 0


def _report(
    settings: dict[str, Any], runs: list[dict[str, Any]], baseline: list[dict[str, Any]], *, sweep: bool
) -> dict[str, Any]:
    wall = round(sum(r["wall_s"] for r in runs), 1)
    report = {"settings": settings, "wall_s": wall, "runs": runs, "targets": targets(runs, baseline)}
    return {**report, "sweep": _sweep(runs)} if sweep else report


def _ordered(runs: list[dict[str, Any]], names: Sequence[str], kept: set[str]) -> list[dict[str, Any]]:
    """``runs`` with the ``kept`` ones (already in the JSON) first, in place, then the new ones in ``names``
    order (parallel runs finish out of order)."""
    rank = {name: i for i, name in enumerate(names)}
    fresh = sorted((r for r in runs if r["name"] not in kept), key=lambda r: rank.get(r["name"], len(rank)))
    return [r for r in runs if r["name"] in kept] + fresh


def _replace_run(runs: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """``runs`` with ``result`` in place of the run of the same name (appended if new)."""
    names = [r["name"] for r in runs]
    if result["name"] not in names:
        return [*runs, result]
    return [result if r["name"] == result["name"] else r for r in runs]


if __name__ == "__main__":
    sys.exit(main())
