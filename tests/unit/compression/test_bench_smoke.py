"""The codec benchmark runs end to end on a small tensor and writes the documented JSON layout."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[3] / "scripts" / "bench"
CODECS = ("fp16", "int8", "int4", "sign1bit_ef", "topk1pct_ef")
BASELINES = ("naive_int8", "naive_int4", "naive_sign1bit_ef", "naive_topk1pct_ef", "hivemind_fp16")
MAYBE_UNAVAILABLE = ("hivemind_uniform8bit", "hivemind_blockwise8bit")  # numpy >= 2.4 / no bitsandbytes
FIGURES = {"encode_gbps", "decode_gbps", "ratio", "rel_error"}


def load_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_codecs", BENCH / "codecs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_codecs", module)
    spec.loader.exec_module(module)
    return module


def assert_figures(name: str, entry: dict[str, object]) -> None:
    assert set(entry) == FIGURES, (name, entry)
    for key, value in entry.items():
        assert isinstance(value, float), (name, key, value)
        assert math.isfinite(value), (name, key, value)
        assert value >= 0, (name, key, value)


def test_codec_bench_smoke(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bench = load_bench(monkeypatch)
    out = tmp_path / "codecs.json"
    # One thread: on a busy shared machine, two-thread parallel regions stall for a scheduler tick.
    threads = torch.get_num_threads()
    assert bench.main(["--json", str(out), "--numel", "100000", "--repeats", "1", "--threads", "1"]) == 0
    assert torch.get_num_threads() == threads  # restored
    document = json.loads(out.read_text())
    assert set(document) == {"roof_gbps", "codecs", "baselines", "meta"}
    assert isinstance(document["roof_gbps"], float)
    assert math.isfinite(document["roof_gbps"])
    assert document["roof_gbps"] > 0
    assert set(CODECS) <= set(document["codecs"])
    for name, entry in document["codecs"].items():
        assert_figures(name, entry)
    assert set(BASELINES + MAYBE_UNAVAILABLE) <= set(document["baselines"])
    for name, entry in document["baselines"].items():
        if name in MAYBE_UNAVAILABLE and "error" in entry:
            assert set(entry) == {"error"}
            assert isinstance(entry["error"], str)
            assert entry["error"]
        else:
            assert_figures(name, entry)
    meta = document["meta"]
    assert meta["numel"] == 100_000
    assert meta["threads"] == 1
    for key in ("distribution", "torch", "threads", "machine"):
        assert meta[key], key
    # Lossless-ish and lossy codecs land where their formats say.
    assert document["codecs"]["fp16"]["ratio"] == pytest.approx(0.5, abs=1e-3)
    assert document["codecs"]["topk1pct_ef"]["ratio"] <= 1 / 50
    assert document["codecs"]["fp16"]["rel_error"] < 1e-3
