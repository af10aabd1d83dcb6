"""The federated experiment's targets, markdown table and plot; and a summary over seeds.

.venv/bin/python -m scripts.experiments.federated_report seed0.json seed1.json seed2.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot", "seed_summary", "summaries", "tail_accuracy", "targets"]

TAIL = 5  # evaluations averaged for the smoothed final accuracy: single rounds swing by several points


def tail_accuracy(run: dict[str, Any]) -> float:
    """Mean held-out accuracy over the last ``TAIL`` rounds."""
    curve: list[float] = run["accuracy_curve"][1:] or run["accuracy_curve"]
    return statistics.mean(curve[-TAIL:])


def _by_method(runs: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
    return next((r for r in runs if r["method"] == method), None)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's performance goals for federated training, checked on the figures of this report."""
    out = []
    dense, compressed = _by_method(report["runs"], "dense"), _by_method(report["runs"], "compressed")
    if dense and compressed:
        drop = (dense["final_accuracy"] - compressed["final_accuracy"]) * 100
        ratio = dense["uplink_bytes"] / max(compressed["uplink_bytes"], 1)
        out.append({"target": "compressed within 1 point of dense accuracy", "holds": drop <= 1.0,
                    "detail": f"compressed - dense: {-drop:+.1f} points"})  # fmt: skip
        out.append({"target": ">= 20x fewer uplink bytes than dense", "holds": ratio >= 20,
                    "detail": f"{ratio:.1f}x"})  # fmt: skip
    secure = _by_method(report["runs"], "secagg")
    if compressed and secure:
        gap = (tail_accuracy(secure) - tail_accuracy(compressed)) * 100
        out.append({"target": "secure aggregation within 2 points of compressed (last-5 mean)",
                    "holds": gap >= -2.0, "detail": f"secagg - compressed: {gap:+.1f} points"})  # fmt: skip
    plain = next((r for r in report.get("overhead", []) if r["method"] == "compressed"), None)
    secure = next((r for r in report.get("overhead", []) if r["method"] == "secagg"), None)
    if plain and secure:
        ratio = secure["round_seconds"] / plain["round_seconds"]
        out.append({"target": f"secure aggregation <= 2x round time at {secure['clients']} clients",
                    "holds": ratio <= 2.0, "detail": f"{ratio:.2f}x"})  # fmt: skip
    return out


def _row(run: dict[str, Any], dense_bytes: float | None) -> str:
    ratio = f"{dense_bytes / run['uplink_bytes']:.1f}x" if dense_bytes else "-"
    cells = [run["name"], run["method"], run["task"], run["clients"], run["rounds"], f"{run['final_accuracy']:.3f}",
             f"{tail_accuracy(run):.3f}", f"{run['uplink_bytes'] / 1e6:.2f}", ratio,
             f"{run['round_seconds']:.1f}"]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    """Settings, the table of runs and overhead runs, and the targets."""
    s = report["settings"]
    dense = _by_method(report["runs"], "dense")
    head = ["| name | method | task | clients | rounds | final accuracy | last-5 mean | uplink MB "
            "| fewer bytes than dense | s / round |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    lines = [
        "# Federated LoRA: dense vs compressed vs secure aggregation",
        "",
        f"task {s['task']}, {s['clients']} non-IID clients (Dirichlet alpha {s['alpha']}), {s['rounds']} rounds of "
        f"{s['local_steps']} local steps (batch {s['batch_size']}, lr {s['lr']}); compressed: {_codec(s)} "
        f"with error feedback; secure aggregation {_secure(s)} with error feedback. "
        f"Whole run {report.get('elapsed_s', 0):.0f} s.",
        "",
        *head,
        *(_row(r, dense["uplink_bytes"] if dense else None) for r in report["runs"]),
    ]
    if report.get("overhead"):
        lines += ["", "Protocol overhead (fast digits task):", "", *head, *(_row(r, None) for r in report["overhead"])]
    if report.get("targets"):
        lines += ["", "## Targets", ""]
        lines += [f"- {'holds' if t['holds'] else 'FAILS'}: {t['target']} ({t['detail']})" for t in report["targets"]]
    return "\n".join(lines) + "\n"


def _secure(settings: dict[str, Any]) -> str:
    if settings.get("secagg_encoding", "fixed") == "scaled":
        levels = settings.get("secagg_levels", 1)
        return f"of every coordinate as an integer in [-{levels}, {levels}] times a scale shared by the round"
    return f"of a {settings['secagg_density']} subset in a 16-bit field (clip {settings['secagg_clip']})"


def _codec(settings: dict[str, Any]) -> str:
    codec = settings.get("codec", "topk")
    return f"top-k ratio {settings['topk_ratio']} (int8 values)" if codec == "topk" else codec


def plot(report: dict[str, Any], path: Path) -> None:
    """Accuracy vs round and accuracy vs cumulative uplink bytes (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_round, by_bytes) = plt.subplots(1, 2, figsize=(10, 4))
    for run in report["runs"]:
        curve = run["accuracy_curve"]
        by_round.plot(range(len(curve)), curve, marker="o", label=run["name"])
        by_bytes.plot([max(b, 1) for b in run["uplink_curve"]][1:], curve[1:], marker="o", label=run["name"])
    by_round.set(xlabel="round", ylabel="held-out accuracy", title="accuracy by round")
    by_bytes.set(xscale="log", xlabel="cumulative uplink bytes (all clients)", ylabel="held-out accuracy",
                 title="accuracy by bytes sent")  # fmt: skip
    for axis in (by_round, by_bytes):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def seed_summary(reports: list[dict[str, Any]], baseline: str = "dense", method: str = "compressed") -> str:
    """Per seed and on average: ``method`` minus ``baseline``, final and last-5 accuracy, in points."""
    lines = [f"| seed | {baseline} final | {method} final | gap | {baseline} last-5 | {method} last-5 | gap |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    finals, tails = [], []
    for report in reports:
        base, run = _by_method(report["runs"], baseline), _by_method(report["runs"], method)
        if not (base and run):
            raise ValueError(f"seed {report['settings']['seed']}: needs a {baseline} and a {method} run")
        final = 100 * (run["final_accuracy"] - base["final_accuracy"])
        tail = 100 * (tail_accuracy(run) - tail_accuracy(base))
        finals.append(final)
        tails.append(tail)
        lines.append(f"| {report['settings']['seed']} | {base['final_accuracy']:.3f} | "
                     f"{run['final_accuracy']:.3f} | {final:+.1f} | {tail_accuracy(base):.3f} | "
                     f"{tail_accuracy(run):.3f} | {tail:+.1f} |")  # fmt: skip
    lines.append(f"| mean | | | {statistics.mean(finals):+.1f} | | | {statistics.mean(tails):+.1f} |")
    return "\n".join(lines) + "\n"


def summaries(reports: list[dict[str, Any]]) -> str:
    """Compressed vs dense over the seeds; and secure vs compressed where every seed has a secure run."""
    out = seed_summary(reports)
    if all(_by_method(r["runs"], "secagg") for r in reports):
        out += "\n" + seed_summary(reports, baseline="compressed", method="secagg")
    return out


if __name__ == "__main__":
    print(summaries([json.loads(Path(path).read_text()) for path in sys.argv[1:]]), end="")
