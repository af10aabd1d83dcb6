"""scripts/experiments/diloco.py at toy scale: JSON layout, byte accounting, identical replica states."""

from __future__ import annotations

import json
import random
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest
import torch

from scripts.experiments import diloco
from scripts.experiments.simulate import Budget, Exchange, wire_factor
from swarmnet.compression import get_codec
from swarmnet.data import register_corpus
from swarmnet.models import GPT, preset

STEPS, REPLICAS, BATCH = 20, 2, 4
RUNS = ("ddp", "diloco_h5", "diloco_h5_int4", "streaming_h10_p2_t2_int4", "single")
FIELDS = {"name", "method", "H", "codec", "fragments", "tokens", "val_loss", "bytes_per_replica", "peak_sync_bytes"}


def _text() -> bytes:
    rng = random.Random(0)
    words = ["and", "the", "lord", "said", "unto", "them", "behold", "every", "herb", "bearing", "seed"]
    return "\n".join(" ".join(rng.choices(words, k=12)) for _ in range(800)).encode()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    register_corpus("experiment_test", _text)
    out = tmp_path_factory.mktemp("diloco") / "diloco.json"
    argv = [
        "--json",
        str(out),
        "--preset",
        "tiny",
        "--corpus",
        "experiment_test",
        "--steps",
        str(STEPS),
        "--jobs",
        "1",
    ]
    argv += ["--replicas", str(REPLICAS), "--batch-size", str(BATCH), "--curve-points", "2", "--threads", "1"]
    assert diloco.main([*argv, "--runs", ",".join(RUNS)]) == 0
    assert out.with_suffix(".md").read_text().count("\n| ") == len(RUNS) + 1  # header and one row per run
    assert out.with_suffix(".png").stat().st_size > 0
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def _runs(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in report["runs"]}


def test_json_layout(report: dict[str, Any]) -> None:
    runs = _runs(report)
    assert list(runs) == list(RUNS)
    assert all(set(r) >= FIELDS for r in runs.values())
    assert {r["method"] for r in runs.values()} == {"ddp", "diloco", "streaming", "single"}
    assert runs["ddp"]["H"] is None
    assert runs["ddp"]["fragments"] is None
    assert runs["streaming_h10_p2_t2_int4"]["fragments"] == 2
    assert runs["diloco_h5_int4"]["H"] == 5
    assert all(r["val_loss"] > 0 and len(r["curve"]) == 2 for r in runs.values())
    assert isinstance(report["targets"], list)


def test_token_budget(report: dict[str, Any]) -> None:
    runs, per_step = _runs(report), BATCH * preset("tiny").context
    assert {r["tokens"] for r in runs.values() if r["method"] != "single"} == {REPLICAS * STEPS * per_step}
    assert runs["single"]["tokens"] == STEPS * per_step
    assert runs["single"]["bytes_per_replica"] == 0


def test_ddp_bytes_follow_the_formula(report: dict[str, Any]) -> None:
    ddp = _runs(report)["ddp"]
    params = GPT(preset("tiny")).num_parameters()
    payload = len(get_codec("none").encode(torch.zeros(params)))
    assert ddp["params"] == params
    assert payload == 4 * params + 32
    assert ddp["bytes_per_replica"] == STEPS * wire_factor(REPLICAS) * payload
    assert ddp["peak_sync_bytes"] == wire_factor(REPLICAS) * payload


def test_compressed_diloco_sends_far_less(report: dict[str, Any]) -> None:
    runs = _runs(report)
    assert runs["diloco_h5_int4"]["syncs"] == STEPS // 5
    assert runs["diloco_h5_int4"]["bytes_per_replica"] * 30 < runs["ddp"]["bytes_per_replica"]
    assert runs["diloco_h5_int4"]["bytes_per_replica"] * 6 < runs["diloco_h5"]["bytes_per_replica"]
    assert runs["streaming_h10_p2_t2_int4"]["peak_sync_bytes"] < 0.51 * runs["diloco_h5_int4"]["peak_sync_bytes"]


def test_replicas_end_with_identical_global_state(report: dict[str, Any]) -> None:
    for run in _runs(report).values():
        if run["method"] in ("diloco", "streaming"):
            assert len(run["digests"]) == REPLICAS
            assert len(set(run["digests"])) == 1


def test_exchange_averages_exactly_without_compression() -> None:
    values = [torch.arange(6.0), torch.ones(6)]
    exchange = Exchange("none", 2, error_feedback=False)
    assert torch.equal(exchange.average(values, key="v"), (values[0] + values[1]) / 2)
    assert exchange.sent == [len(get_codec("none").encode(values[0]))] * 2
    assert exchange.syncs == 1


@pytest.mark.parametrize("name", ["ddp_h5", "diloco", "diloco_h5_nosuchcodec", "diloco_h5_ef", "streaming_h50"])
def test_malformed_run_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="run"):
        diloco.parse_run(name)


def test_run_names_parse() -> None:
    spec = diloco.parse_run("streaming_h50_p4_t3_m0.25_olr0.5_int4")
    assert (spec.inner_steps, spec.fragments, spec.overlap_steps, spec.mixing) == (50, 4, 3, 0.25)
    assert (spec.outer_lr, spec.codec, spec.error_feedback) == (0.5, "int4", True)
    assert diloco.parse_run("ddp_lr0.01").lr == 0.01
    assert not diloco.parse_run("diloco_h50_int4_noef").error_feedback


def test_sweep_then_resume_merge_and_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register_corpus("experiment_test", _text)
    out = tmp_path / "sweep.json"
    argv = ["--json", str(out), "--preset", "tiny", "--corpus", "experiment_test", "--steps", "4", "--replicas", "2"]
    argv += ["--jobs", "1"]  # worker processes would not see the corpus this test registers
    argv += ["--batch-size", "2", "--curve-points", "1", "--threads", "1"]
    assert diloco.main([*argv, "--sweep"]) == 0
    sweep = json.loads(out.read_text())["sweep"]
    assert [float(lr) for lr in sweep["val_loss"]] == list(diloco.SWEEP_LRS)
    assert sweep["best_lr"] in diloco.SWEEP_LRS
    capsys.readouterr()
    assert diloco.main([*argv, "--resume", "--runs", "ddp_lr0.001,single"]) == 0
    ran = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if ": val " in line]
    assert ran == ["single"]  # the sweep's ddp_lr0.001 is already there
    assert diloco.main([*argv, "--merge", "--runs", "ddp_lr0.001"]) == 0  # replaced in place
    names = [r["name"] for r in json.loads(out.read_text())["runs"]]
    assert names == [f"ddp_lr{lr:g}" for lr in diloco.SWEEP_LRS] + ["single"]
    out.with_suffix(".md").unlink()
    assert diloco.main([*argv, "--render"]) == 0
    assert "| single |" in out.with_suffix(".md").read_text()


def test_parallel_runs_come_back_whole() -> None:
    budget = Budget(steps=2, replicas=2, preset="tiny", corpus="kjv", batch_size=2, curve_points=1, seed=0)
    try:
        results = list(diloco.run_each(["single", "ddp"], budget, ddp_lr=diloco.DDP_LR, jobs=2, threads=1))
    finally:  # spawn started multiprocessing's resource tracker; the suite must not leave it running
        resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]
    assert sorted(r["name"] for r in results) == ["ddp", "single"]
    assert all(r["threads"] == 1 and r["val_loss"] > 0 for r in results)
    assert [r["name"] for r in diloco._ordered(results, ["single", "ddp"], set())] == ["single", "ddp"]
    assert [r["name"] for r in diloco._ordered(results, ["single", "ddp"], {"ddp"})] == ["ddp", "single"]
