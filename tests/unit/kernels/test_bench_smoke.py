"""The kernel benchmark runs end to end on a tiny CPU input and writes the documented JSON layout."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[3] / "scripts" / "bench" / "kernels.py"
KERNELS = (
    "ef_sign_encode",
    "sign_decode_accumulate",
    "blockwise_quantize",
    "topk_threshold",
    "outer_nesterov",
    "lora_linear",
)
OURS = ("outer_nesterov", "lora_linear")  # the others may still be in the works: skipped or erroring is allowed


def load_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_kernels", module)
    spec.loader.exec_module(module)
    return module


def is_figure(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_kernel_bench_smoke(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bench = load_bench(monkeypatch)
    out = tmp_path / "kernels.json"
    threads = torch.get_num_threads()
    # The CPU device even where CUDA exists: no Triton here, and fast.
    args = ["--json", str(out), "--numel", "50000", "--repeats", "1", "--threads", "1", "--device", "cpu"]
    assert bench.main(args) == 0
    assert torch.get_num_threads() == threads  # restored
    document = json.loads(out.read_text())
    assert set(document) == {"device", "roof_gbps", "kernels", "meta"}
    assert document["device"].startswith("cpu")
    assert is_figure(document["roof_gbps"])
    assert tuple(document["kernels"]) == KERNELS
    meta = document["meta"]
    assert meta["numel"] == 50_000
    assert meta["repeats"] == 1
    assert meta["threads"] == 1
    assert meta["backends"] == ["reference", "cpu"]
    for key in ("add_gbps", "copy_rw_gbps"):
        assert is_figure(meta["roofs_gbps"][key]), key
    for name, entry in document["kernels"].items():
        if "skipped" in entry:
            assert name not in OURS
            assert set(entry) == {"skipped"}
            assert isinstance(entry["skipped"], str)
            assert entry["skipped"]
            continue
        assert set(entry) == {"reference_gbps", "cpu_gbps"}, name  # no triton_gbps on the CPU
        for backend in ("reference", "cpu"):
            value = entry[f"{backend}_gbps"]
            if value is None:  # a backend that raised leaves its message
                assert name not in OURS
                assert meta["errors"][f"{name}/{backend}"]
            else:
                assert is_figure(value), (name, backend, value)
        assert meta["kernels"][name]["elements"] > 0
        assert meta["kernels"][name]["args"]
    # lora_linear counts the x and weight elements it reads: x [256, d] and weight [d, d].
    d = bench.lora_width(50_000)
    assert meta["kernels"]["lora_linear"]["elements"] == 256 * d + d * d <= 50_000
    assert meta["kernels"]["outer_nesterov"]["elements"] == 50_000
    assert set(meta["cpu_checks"]) <= set(KERNELS[:4])
    assert all(isinstance(passed, bool) for passed in meta["cpu_checks"].values())


def test_lora_width_fits_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_bench(monkeypatch)
    for numel in (50_000, 25_000_000, 100_000_000):
        d = module.lora_width(numel)
        assert d % 16 == 0
        assert 256 * d + d * d <= numel < 256 * (d + 16) + (d + 16) ** 2


def test_a_missing_kernel_module_is_skipped_not_fatal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bench = load_bench(monkeypatch)

    def missing(g: torch.Tensor) -> object:
        raise ImportError("No module named 'swarmnet.kernels.sign'")

    monkeypatch.setattr(bench, "KERNELS", {"ef_sign_encode": missing, "outer_nesterov": bench.nesterov})
    out = tmp_path / "kernels.json"
    assert bench.main(["--json", str(out), "--numel", "1000", "--repeats", "1", "--device", "cpu"]) == 0
    kernels = json.loads(out.read_text())["kernels"]
    assert kernels["ef_sign_encode"] == {"skipped": "ImportError: No module named 'swarmnet.kernels.sign'"}
    assert is_figure(kernels["outer_nesterov"]["cpu_gbps"])
