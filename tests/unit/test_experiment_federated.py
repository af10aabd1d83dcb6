"""The federated experiment script end to end on the fast digits task (tiny settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scripts.experiments import federated

pytest.importorskip("sklearn", reason="the digits task ships in scikit-learn")
pytest.importorskip("peft", reason="the experiment wraps its models with peft LoRA")


@pytest.mark.timeout(120)
def test_experiment_writes_the_documented_layout(tmp_path: Path) -> None:
    out = tmp_path / "fed.json"
    argv = ["--json", str(out), "--task", "digits", "--clients", "3", "--rounds", "2", "--lr", "0.02",
            "--overhead-clients", "3", "--overhead-rounds", "1"]  # fmt: skip
    assert federated.main(argv) == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["runs"]] == ["dense", "compressed", "secagg"]
    for run in report["runs"] + report["overhead"]:
        assert {"name", "method", "clients", "final_accuracy", "uplink_bytes", "round_seconds"} <= set(run)
        assert run["method"] in ("dense", "compressed", "secagg")
        assert 0.0 <= run["final_accuracy"] <= 1.0
        assert len(run["accuracy_curve"]) == run["rounds"] + 1
    dense, compressed, secure = report["runs"]
    assert compressed["uplink_bytes"] < dense["uplink_bytes"] / 10
    # Secure rounds send every coordinate as a 6-bit slot (3 clients, 7 levels: 5 per 32-bit word).
    per_round = [b - a for a, b in zip(secure["uplink_curve"], secure["uplink_curve"][1:], strict=False)]
    assert per_round[0] == per_round[1] < dense["uplink_bytes"] / 2 / 4.5
    assert {t["target"] for t in report["targets"]} >= {
        ">= 20x fewer uplink bytes than dense",
        "secure aggregation within 2 points of compressed (last-5 mean)",
    }
    assert out.with_suffix(".md").read_text().startswith("# Federated LoRA")
    assert out.with_suffix(".png").stat().st_size > 0


def _report(seed: int, dense: list[float], compressed: list[float]) -> dict[str, object]:
    runs = [
        {"method": m, "final_accuracy": c[-1], "accuracy_curve": c}
        for m, c in (("dense", dense), ("compressed", compressed))
    ]
    return {"settings": {"seed": seed}, "runs": runs}


def test_seed_summary_gives_final_and_last5_gaps_per_seed_and_their_mean() -> None:
    from scripts.experiments.federated_report import seed_summary, tail_accuracy

    flat, rising = [0.1] + [0.5] * 6, [0.1, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert tail_accuracy({"accuracy_curve": rising}) == pytest.approx(0.6)  # rounds 2-6, not the initial 0.1
    lines = seed_summary([_report(0, flat, rising), _report(1, rising, flat)]).splitlines()
    assert lines[2].split("|")[4].strip() == "+50.0"  # seed 0: final 1.0 vs 0.5
    assert lines[2].split("|")[7].strip() == "+10.0"  # last-5 mean 0.6 vs 0.5
    assert lines[3].split("|")[4].strip() == "-50.0"
    assert lines[-1].split("|")[4].strip() == "+0.0"  # the mean of +50 and -50
    with pytest.raises(ValueError, match="seed 2"):
        seed_summary([{"settings": {"seed": 2}, "runs": []}])


def test_every_configuration_gets_fresh_loaders_with_the_same_batches() -> None:
    from scripts.experiments.federated_tasks import make_task

    task = make_task("digits", clients=3, alpha=0.5, batch_size=8, max_length=0, seed=1)
    used = task.make_loaders()
    first_batches = [next(iter(loader)) for loader in used]
    for loader in used:  # the configuration that ran first consumes further epochs
        list(loader)
    assert not (next(iter(used[0]))[1] == first_batches[0][1]).all()  # a used loader has moved on
    for (features, labels), fresh in zip(first_batches, task.make_loaders(), strict=True):
        again_features, again_labels = next(iter(fresh))
        assert torch.equal(features, again_features)
        assert torch.equal(labels, again_labels)


def test_summaries_add_secure_against_compressed_when_every_seed_has_a_secure_run() -> None:
    from scripts.experiments.federated_report import summaries

    flat, rising = [0.1] + [0.5] * 6, [0.1, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    reports = [_report(0, flat, rising), _report(1, rising, flat)]
    assert "secagg" not in summaries(reports)
    for report, secure in zip(reports, (flat, rising), strict=True):
        report["runs"].append({"method": "secagg", "final_accuracy": secure[-1], "accuracy_curve": secure})  # type: ignore[attr-defined]
    lines = summaries(reports).splitlines()
    assert lines[6].startswith("| seed | compressed final | secagg final |")
    assert lines[8].split("|")[7].strip() == "-10.0"  # seed 0: secure last-5 0.5 vs compressed 0.6
    assert lines[-1].split("|")[7].strip() == "+0.0"
