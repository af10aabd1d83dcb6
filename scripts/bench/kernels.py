"""Benchmark: every fused kernel's reference, CPU and Triton paths, against a same-run memory roof.

One command on any machine (CUDA is detected; ``--device`` overrides)::

    .venv/bin/python scripts/bench/kernels.py --json artifacts/bench/kernels.json
    .venv/bin/python scripts/bench/kernels.py --json /tmp/smoke.json --numel 50000 --repeats 1 --threads 1

Each kernel runs through its public function under ``force_backend(b)`` for every backend the device
has: ``reference`` and ``cpu`` on the CPU; ``reference`` and ``triton`` on CUDA (the CPU path takes only
CPU tensors, so ``cpu_gbps`` is null there; run with ``--device cpu`` for CPU figures on that machine).
Figures are GB/s of fp32 input, ``4 * elements / 1e9 / seconds``, best of ``--repeats`` calls after one
warm-up call (CUDA: synchronised before and after each). ``--numel`` defaults to 25,000,000 on the CPU and
100,000,000 on CUDA. Inputs are gradient-like, ``randn(n) * rand(n)**4`` (seed 0). The kernels:

* ``ef_sign_encode(g, residual, 4096)``; ``sign_decode_accumulate(acc, bits, scales, 4096, 0.5)``
  (the payload of one encode of ``g``); elements: ``n``.
* ``blockwise_quantize(g, 4096, 8)`` (int8, no residual, as the int8 codec); elements: ``n``.
* ``topk_threshold(g, n // 100, residual)`` (1%, with error feedback); elements: ``n``.
* ``outer_nesterov(global, local, momentum, 0.7, 0.9)`` over three buffers of ``n``; elements: ``n``.
* ``lora_linear(x, weight, lora_a, lora_b, 2.0, bias)`` with ``x [256, d]``, ``weight [d, d]``, rank 16, ``d``
  the largest multiple of 16 with ``256 d + d**2 <= n``; elements: ``x.numel() + weight.numel()``, the
  sizes read (the adapter and bias add ``33 d``, under 1%). The exact shapes are in the JSON's meta.

A kernel whose module is missing (or whose inputs cannot be prepared) is skipped with the error, recorded
as ``{"skipped": "ImportError: ..."}``; a backend that raises is recorded as null with the error in
``meta["errors"]``.

Roof (``roof_gbps``): on the CPU ``x.add_(1.0)`` on ``n`` fp32 elements in GB/s of fp32 input (the project's
definition; reads and writes each element once); on CUDA a device-to-device ``y.copy_(x)`` counting the
bytes read and written (``8 * n / 1e9 / s``, the HBM bandwidth). Both roofs are measured before and after
the kernels, the better of the two counts; the other figures are in meta. The project's CPU target for
kernels 1-4 is printed as PASS/FAIL: ``cpu >= min(3 * reference, 0.5 * roof)``.

``--load N`` (CPU only) measures a shared machine as well: every kernel's ``cpu`` path once more on one
torch thread (idle) and once more at the run's threads while N busy processes (pure Python spin loops)
run; the table shows idle 1-thread, idle default-threads and loaded GB/s and loaded / idle-1-thread
against the 50% target (the fair share with one busy process per core); the JSON's ``load`` has them::

    .venv/bin/python scripts/bench/kernels.py --json artifacts/bench/kernels_load2.json --load 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):  # run by path (python scripts/bench/kernels.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.load import KIND, busy_processes, load_row
from swarmnet.kernels.dispatch import force_backend

CHUNK = 4096  # chunk / block size of the sign and blockwise kernels, the codecs' defaults
LORA_TOKENS, LORA_RANK, LORA_SCALE = 256, 16, 2.0
TARGETED = ("ef_sign_encode", "sign_decode_accumulate", "blockwise_quantize", "topk_threshold")
DISTRIBUTION = "randn(n) * rand(n)**4, fp32, torch.Generator(device).manual_seed(0)"


@dataclass(frozen=True)
class Case:
    """One kernel ready to run: ``call`` runs it once on prepared inputs (whichever backend is forced)."""

    elements: int
    call: Callable[[], object]
    describe: str


Builder = Callable[[torch.Tensor], Case]


def sign_encode(g: torch.Tensor) -> Case:
    from swarmnet.kernels.sign import ef_sign_encode

    residual = torch.zeros_like(g)
    return Case(g.numel(), lambda: ef_sign_encode(g, residual, CHUNK), f"chunk_size={CHUNK}, residual")


def sign_decode(g: torch.Tensor) -> Case:
    from swarmnet.kernels.sign import ef_sign_encode, sign_decode_accumulate

    bits, scales = ef_sign_encode(g, torch.zeros_like(g), CHUNK)
    acc = torch.zeros_like(g)
    return Case(g.numel(), lambda: sign_decode_accumulate(acc, bits, scales, CHUNK, 0.5), "weight=0.5")


def blockwise(g: torch.Tensor) -> Case:
    from swarmnet.kernels.blockwise import blockwise_quantize

    return Case(g.numel(), lambda: blockwise_quantize(g, CHUNK, 8), f"block_size={CHUNK}, bits=8, no residual")


def topk(g: torch.Tensor) -> Case:
    from swarmnet.kernels.topk import topk_threshold

    residual, k = torch.zeros_like(g), g.numel() // 100
    return Case(g.numel(), lambda: topk_threshold(g, k, residual), f"k={k} (1%), residual")


def nesterov(g: torch.Tensor) -> Case:
    from swarmnet.kernels.nesterov import outer_nesterov

    # After the first call local == global (the kernel copies), so g = 0 from then on; the work is the same.
    global_params, local_params, buf = g + 1.0, g.clone(), torch.zeros_like(g)
    return Case(g.numel(), lambda: outer_nesterov(global_params, local_params, buf, 0.7, 0.9), "lr=0.7, momentum=0.9")


def lora_width(numel: int) -> int:
    """The largest multiple of 16 (at least 16) with ``LORA_TOKENS * d + d * d <= numel``."""
    d = int((-LORA_TOKENS + math.sqrt(LORA_TOKENS**2 + 4 * numel)) / 2)
    return max(16, d // 16 * 16)


def lora(g: torch.Tensor) -> Case:
    from swarmnet.kernels.lora import lora_linear

    d = lora_width(g.numel())
    generator = torch.Generator(g.device).manual_seed(1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=g.device) / math.sqrt(shape[-1])

    x, weight, a, b, bias = randn(LORA_TOKENS, d), randn(d, d), randn(LORA_RANK, d), randn(d, LORA_RANK), randn(d)
    return Case(
        x.numel() + weight.numel(),
        lambda: lora_linear(x, weight, a, b, LORA_SCALE, bias),
        f"x [{LORA_TOKENS}, {d}], weight [{d}, {d}], r={LORA_RANK}, bias, scale={LORA_SCALE}",
    )


KERNELS: dict[str, Builder] = {
    "ef_sign_encode": sign_encode,
    "sign_decode_accumulate": sign_decode,
    "blockwise_quantize": blockwise,
    "topk_threshold": topk,
    "outer_nesterov": nesterov,
    "lora_linear": lora,
}


def best_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def roofs(g: torch.Tensor, repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """``add_`` in GB/s of fp32 input and ``copy_`` in GB/s read + written, on ``g``'s device."""
    x, y = g.clone(), torch.empty_like(g)
    gb = 4 * g.numel() / 1e9
    return {
        "add_gbps": gb / best_seconds(lambda: x.add_(1.0), repeats, sync),
        "copy_rw_gbps": 2 * gb / best_seconds(lambda: y.copy_(x), repeats, sync),
    }


def measure(case: Case, backends: Sequence[str], repeats: int, sync: Callable[[], None]) -> dict[str, float | str]:
    """``{backend}_gbps`` per backend; a backend that raises gets ``{backend}_error`` instead."""
    gb = 4 * case.elements / 1e9
    row: dict[str, float | str] = {}
    for backend in backends:

        def call(backend: str = backend) -> object:
            with force_backend(backend):
                return case.call()

        try:
            row[f"{backend}_gbps"] = gb / best_seconds(call, repeats, sync)
        except Exception as error:  # a kernel still in the works is a result, not a crash
            row[f"{backend}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return row


def gradient_like(numel: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator(device).manual_seed(0)
    g = torch.randn(numel, generator=generator, device=device)
    return g.mul_(torch.rand(numel, generator=generator, device=device).pow_(4))


def fmt(value: object, spec: str = ">9.3f", suffix: str = "") -> str:
    """A figure for the table, or a dash where there is none."""
    return format(value, spec) + suffix if isinstance(value, float) else f"{'-':>9}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--numel", type=int, default=0, help="fp32 elements (default 25M on CPU, 100M on CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (best one counts)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--load", type=int, default=0, help="also measure beside N busy processes (and 1 thread)")
    args = parser.parse_args(argv)
    if args.numel < 0 or args.repeats < 1 or args.threads < 0 or args.load < 0:
        parser.error("--numel, --threads and --load must not be negative, --repeats must be positive")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if use_cuda and args.load:
        parser.error("--load measures the CPU paths: add --device cpu")
    numel = args.numel or (100_000_000 if use_cuda else 25_000_000)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(args.threads or threads)
        return run(args.json, numel, args.repeats, torch.device("cuda" if use_cuda else "cpu"), args.load)
    finally:
        torch.set_num_threads(threads)


def cpu_figures_at(g: torch.Tensor, repeats: int, threads: int, load: int) -> dict[str, float | None]:
    """Every kernel's ``cpu`` path in GB/s on ``threads`` torch threads beside ``load`` busy processes."""
    previous = torch.get_num_threads()
    figures: dict[str, float | None] = {}
    try:
        torch.set_num_threads(threads)
        with busy_processes(load):
            for name, build in KERNELS.items():
                try:
                    row = measure(build(g), ("cpu",), repeats, lambda: None)
                except Exception:  # not importable or not preparable: the main table says why
                    row = {}
                value = row.get("cpu_gbps")
                figures[name] = value if isinstance(value, float) else None
    finally:
        torch.set_num_threads(previous)
    return figures


def load_section(
    idle_1t: dict[str, float | None],
    kernels: dict[str, dict[str, float | str | None]],
    loaded: dict[str, float | None],
) -> dict[str, dict[str, float | bool | None]]:
    """Per kernel: idle 1-thread, idle default and loaded ``cpu`` GB/s, loaded / idle-1t and the 50% check."""
    table: dict[str, dict[str, float | bool | None]] = {}
    for name, busy in loaded.items():
        table[name] = load_row(idle_1t.get(name), kernels.get(name, {}).get("cpu_gbps"), busy)
    return table


def print_load(count: int, threads: int, table: dict[str, dict[str, float | bool | None]]) -> None:
    print(
        f"\nbeside {count} busy processes ({KIND}); {threads} torch threads when loaded; target loaded >= 50% idle-1t"
    )
    print(f"{'kernel (cpu path)':<24}" + " ".join(f"{c:>9}" for c in ("idle-1t", "idle", "loaded", "ld/1t")))
    for name, row in table.items():
        cells = " ".join(fmt(row[k]) for k in ("idle_1t_gbps", "idle_gbps", "loaded_gbps"))
        ratio = row["loaded_over_idle_1t"]
        shown = f"{ratio:>9.0%}" if isinstance(ratio, float) else f"{'-':>9}"
        print(f"{name:<24}{cells}{shown}  {'PASS' if row['at_least_half'] else 'FAIL'}")


def run(path: Path, numel: int, repeats: int, device: torch.device, load: int = 0) -> int:
    """Measure everything, print the table and the targets, write the JSON to ``path``."""
    cuda = device.type == "cuda"
    sync: Callable[[], None] = torch.cuda.synchronize if cuda else lambda: None
    backends = ("reference", "triton") if cuda else ("reference", "cpu")
    g = gradient_like(numel, device)
    idle_1t = cpu_figures_at(g, repeats, 1, 0) if load and not cuda else {}
    before = roofs(g, repeats, sync)
    kernels: dict[str, dict[str, float | str | None]] = {}
    details: dict[str, dict[str, object]] = {}
    errors: dict[str, str] = {}
    for name, build in KERNELS.items():
        try:
            case = build(g)
        except Exception as error:  # ImportError: another engineer's module is not there yet
            why = "its module is not importable" if isinstance(error, ImportError) else "its setup failed"
            print(f"{name}: skipped, {why} ({type(error).__name__}: {error})")
            kernels[name] = {"skipped": f"{type(error).__name__}: {error}"}
            continue
        row = measure(case, backends, repeats, sync)
        details[name] = {"elements": case.elements, "args": case.describe}
        del case  # frees the kernel's inputs before the next one
        entry: dict[str, float | str | None] = {"reference_gbps": None, "cpu_gbps": None}
        if cuda:
            entry["triton_gbps"] = None
        for backend in backends:
            if f"{backend}_error" in row:
                errors[f"{name}/{backend}"] = str(row[f"{backend}_error"])
            else:
                entry[f"{backend}_gbps"] = row[f"{backend}_gbps"]
        kernels[name] = entry
    after = roofs(g, repeats, sync)
    best = {key: max(before[key], after[key]) for key in before}
    roof = best["copy_rw_gbps"] if cuda else best["add_gbps"]
    checks = {} if cuda else cpu_checks(kernels, roof)
    meta = {
        "numel": numel,
        "repeats": repeats,
        "backends": list(backends),
        "distribution": DISTRIBUTION,
        "roof": "device-to-device copy_, bytes read + written" if cuda else "x.add_(1.0), GB/s of fp32 input",
        "roofs_gbps": best,
        "kernels": details,
        "errors": errors,
        "cpu_checks": checks,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    device_name = torch.cuda.get_device_name(device) if cuda else f"cpu ({meta['machine']})"
    print_report(device_name, numel, repeats, roof, best, kernels, details, errors, checks)
    document: dict[str, object] = {"device": device_name, "roof_gbps": roof, "kernels": kernels, "meta": meta}
    if load and not cuda:
        threads = torch.get_num_threads()
        table = load_section(idle_1t, kernels, cpu_figures_at(g, repeats, threads, load))
        print_load(load, threads, table)
        document["load"] = {"processes": load, "kind": KIND, "threads": threads, "table": table}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    print(f"wrote {path}")
    return 0


def cpu_checks(kernels: dict[str, dict[str, float | str | None]], roof: float) -> dict[str, bool]:
    """The project's CPU target for kernels 1-4: ``cpu >= min(3 * reference, 0.5 * roof)``."""
    results = {}
    for name in TARGETED:
        entry = kernels.get(name, {})
        cpu, reference = entry.get("cpu_gbps"), entry.get("reference_gbps")
        if isinstance(cpu, float) and isinstance(reference, float):
            results[name] = cpu >= min(3 * reference, 0.5 * roof)
    return results


def print_report(
    device: str,
    numel: int,
    repeats: int,
    roof: float,
    roofs_gbps: dict[str, float],
    kernels: dict[str, dict[str, float | str | None]],
    details: dict[str, dict[str, object]],
    errors: dict[str, str],
    checks: dict[str, bool],
) -> None:
    print(f"{device}: {numel:,} fp32 elements, {DISTRIBUTION}; best of {repeats} after a warm-up")
    others = ", ".join(f"{key} {value:.2f}" for key, value in roofs_gbps.items())
    print(f"{torch.get_num_threads()} torch threads; roof {roof:.2f} GB/s ({others})")
    columns = ("ref GB/s", "cpu GB/s", "tri GB/s", "cpu/ref", "cpu/roof", "tri/roof")
    print(f"\n{'kernel':<24}" + " ".join(f"{c:>9}" for c in columns) + "  elements, arguments")
    for name, entry in kernels.items():
        if "skipped" in entry:
            print(f"{name:<24}skipped: {entry['skipped']}")
            continue
        ref, cpu, tri = (entry.get(f"{b}_gbps") for b in ("reference", "cpu", "triton"))
        speedup = cpu / ref if isinstance(cpu, float) and isinstance(ref, float) else None
        cpu_roof = cpu / roof if isinstance(cpu, float) else None
        tri_roof = tri / roof if isinstance(tri, float) else None
        figures = [
            fmt(ref),
            fmt(cpu),
            fmt(tri),
            fmt(speedup, ">8.2f", "x"),
            fmt(cpu_roof, ">9.1%"),
            fmt(tri_roof, ">9.1%"),
        ]
        print(f"{name:<24}" + " ".join(figures) + f"  {details[name]['elements']:,}, {details[name]['args']}")
    for key, message in errors.items():
        print(f"  error {key}: {message}")
    if checks:
        print("\nCPU targets (kernels 1-4): cpu >= min(3x reference, 50% roof)")
        for name, passed in checks.items():
            print(f"  {'PASS' if passed else 'FAIL'}  {name}")
    elif device.startswith("cpu"):
        print("\nCPU targets: no kernel 1-4 has both figures")
    else:
        print("\nCPU targets: run with --device cpu")


if __name__ == "__main__":
    sys.exit(main())
