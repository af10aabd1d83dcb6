"""Benchmark: codec throughput, ratio and error on one big gradient-like tensor, with baselines.

For a ``--numel`` fp32 tensor ``g = randn(n) * rand(n)**4`` (torch.Generator seed 0, a
heavy-tailed, gradient-like spread), every codec and every baseline is measured in the same run:

* encode and decode throughput in GB/s of fp32 input (``4 * numel / 1e9 / seconds``, best of
  ``--repeats`` after one warm-up call), so all figures compare with the memory roofs;
* ratio: payload bytes / raw fp32 bytes;
* rel_error: ``||g - decode(encode(g))|| / ||g||`` of the first call (error feedback starts from a
  zero residual, so this is the one-shot compression error).

Codecs: ``fp16``, ``int8``, ``int4``, ``sign1bit_ef`` and ``topk1pct_ef`` (top-k 1%, sampled
selection, fp16 values); the ``_ef`` ones encode through ``ErrorFeedback.encode`` (the codec's
fused ``encode_with_feedback``), as a training peer does. Decode is ``codec.decode`` to a dense
tensor. Baselines: the obvious vectorised PyTorch version of each lossy codec (the ``Naive*`` classes below)
and hivemind's FLOAT16, UNIFORM_8BIT and BLOCKWISE_8BIT (``serialize_torch_tensor`` +
``SerializeToString`` / ``FromString`` + ``deserialize_torch_tensor``: the bytes on the wire).
A baseline that fails (hivemind's 8-bit ones with numpy >= 2.4, or without bitsandbytes) is
recorded as ``{"error": "..."}``. Roofs: ``x.add_(1.0)`` (read + write the tensor once; the
``roof_gbps``) and ``y.copy_(x)``, each measured before and after the rest (the better counts).

    .venv/bin/python scripts/bench/codecs.py --json artifacts/bench/codecs.json
    .venv/bin/python scripts/bench/codecs.py --json /tmp/smoke.json --numel 100000 --repeats 1 --threads 1

``--load N`` measures a shared machine as well: the codecs once more on one torch thread (idle), and
once more at the run's threads while N busy processes (pure Python spin loops) run; the table shows per
codec idle 1-thread, idle default-threads and loaded GB/s, and loaded / idle-1-thread against the 50%
target (the fair share with one busy process per core). The JSON's ``load`` has those figures, the count
and the kind of the busy processes::

    .venv/bin/python scripts/bench/codecs.py --json artifacts/bench/codecs_load2.json --load 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import pad

if __package__ in (None, ""):  # run by path (python scripts/bench/codecs.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.load import KIND, busy_processes, load_row
from swarmnet.compression.base import Codec
from swarmnet.compression.cast import Float16Codec
from swarmnet.compression.error_feedback import ErrorFeedback
from swarmnet.compression.int4 import Int4Codec
from swarmnet.compression.int8 import Int8Codec
from swarmnet.compression.sign1bit import Sign1BitCodec
from swarmnet.compression.topk import TopKCodec

# --- naive baselines: each lossy codec written the obvious way in vectorised PyTorch -------------
# No wire header, no checks, no fusion: what one would write first. The error-feedback ones keep
# their residual between calls (v = g + r, send v compressed, r = v - decoded).


def _tensor(payload: bytes, dtype: np.dtype[np.generic], count: int, offset: int = 0) -> torch.Tensor:
    """A writable tensor copied out of ``payload`` (``frombuffer`` alone would be read-only)."""
    return torch.from_numpy(np.frombuffer(payload, dtype=dtype, count=count, offset=offset).copy())


class NaiveBlockQuant:
    """Blockwise absmax quantisation to int8 (``bits=8``) or packed int4 (``bits=4``), fp32 scales."""

    def __init__(self, numel: int, bits: int, block: int) -> None:
        if bits not in (4, 8) or block % 2:
            raise ValueError(f"bits must be 4 or 8 and the block even, got {bits} and {block}")
        self.numel, self.bits, self.block = numel, bits, block
        self.rows = math.ceil(numel / block)
        self.levels = 127 if bits == 8 else 7

    def encode(self, g: torch.Tensor) -> bytes:
        x = pad(g.reshape(-1), (0, self.rows * self.block - self.numel)).view(self.rows, self.block)
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-30) / self.levels
        q = torch.round(x / scale).clamp(-self.levels, self.levels)
        if self.bits == 8:
            body = q.to(torch.int8).numpy().tobytes()
        else:
            u = (q + 8).to(torch.uint8)
            body = ((u[:, 0::2] << 4) | u[:, 1::2]).numpy().tobytes()
        return body + scale.numpy().tobytes()

    def decode(self, payload: bytes) -> torch.Tensor:
        body = self.rows * self.block * self.bits // 8
        scale = _tensor(payload, np.dtype(np.float32), self.rows, offset=body).view(self.rows, 1)
        if self.bits == 8:
            q = _tensor(payload, np.dtype(np.int8), body).view(self.rows, self.block).float()
        else:
            packed = _tensor(payload, np.dtype(np.uint8), body).view(self.rows, self.block // 2)
            q = torch.stack([packed >> 4, packed & 15], dim=2).view(self.rows, self.block).float() - 8
        return (q * scale).view(-1)[: self.numel]


class NaiveSign1BitEF:
    """1-bit sign with a mean-|v| scale per chunk and error feedback."""

    def __init__(self, numel: int, chunk: int = 4096) -> None:
        self.numel, self.chunk = numel, chunk
        self.rows = math.ceil(numel / chunk)
        self.residual = torch.zeros(numel)

    def encode(self, g: torch.Tensor) -> bytes:
        v = g.reshape(-1) + self.residual
        padded = pad(v, (0, self.rows * self.chunk - self.numel))
        scale = padded.abs().view(-1, self.chunk).mean(1)
        positive = v >= 0
        bits = np.packbits(positive.numpy())
        spread = scale.repeat_interleave(self.chunk)[: self.numel]
        decoded = torch.where(positive, spread, -spread)
        self.residual = v - decoded
        return bits.tobytes() + scale.numpy().tobytes()

    def decode(self, payload: bytes) -> torch.Tensor:
        nbits = math.ceil(self.numel / 8)
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8, count=nbits), count=self.numel)
        scale = _tensor(payload, np.dtype(np.float32), self.rows, offset=nbits)
        signs = torch.from_numpy(bits).float() * 2 - 1
        return signs * scale.repeat_interleave(self.chunk)[: self.numel]


class NaiveTopKEF:
    """Top-k by ``torch.topk`` of ``|v|``, int32 indices and fp16 values, with error feedback."""

    def __init__(self, numel: int, ratio: float = 0.01) -> None:
        self.numel = numel
        self.k = max(1, math.ceil(ratio * numel))
        self.residual = torch.zeros(numel)

    def encode(self, g: torch.Tensor) -> bytes:
        v = g.reshape(-1) + self.residual
        _, indices = torch.topk(v.abs(), self.k, sorted=False)
        values = v[indices].half()
        v[indices] -= values.float()
        self.residual = v
        return indices.int().numpy().tobytes() + values.view(torch.int16).numpy().tobytes()

    def decode(self, payload: bytes) -> torch.Tensor:
        indices = _tensor(payload, np.dtype(np.int32), self.k).long()
        values = _tensor(payload, np.dtype(np.int16), self.k, offset=4 * self.k).view(torch.float16)
        out = torch.zeros(self.numel)
        out[indices] = values.float()
        return out


DISTRIBUTION = "randn(n) * rand(n)**4, fp32, torch.Generator().manual_seed(0) for both"
Entry = dict[str, float] | dict[str, str]


@dataclass(frozen=True)
class Subject:
    """Something to measure: encode a tensor to bytes, decode the bytes back."""

    encode: Callable[[torch.Tensor], bytes]
    decode: Callable[[bytes], torch.Tensor]


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(make: Callable[[], Subject], g: torch.Tensor, repeats: int) -> Entry:
    """The four figures of one subject, or ``{"error": ...}`` if it cannot run here."""
    gb = 4 * g.numel() / 1e9
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hivemind's quantisers warn about deprecated torch APIs
            subject = make()
            payload = subject.encode(g)  # the first call: fresh error-feedback state
            decoded = subject.decode(payload).reshape(-1).double()
            rel_error = float((decoded - g.double()).norm() / g.double().norm())
            encode_s = best_seconds(lambda: subject.encode(g), repeats)
            decode_s = best_seconds(lambda: subject.decode(payload), repeats)
    except Exception as error:  # a baseline that does not work here is a result, not a crash
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
    return {
        "encode_gbps": gb / encode_s,
        "decode_gbps": gb / decode_s,
        "ratio": len(payload) / (4 * g.numel()),
        "rel_error": rel_error,
    }


def plain(codec: Codec) -> Subject:
    return Subject(codec.encode, codec.decode)


def with_feedback(codec: Codec) -> Subject:
    feedback = ErrorFeedback()
    return Subject(lambda g: feedback.encode("g", g, codec), codec.decode)


def codecs() -> dict[str, Callable[[], Subject]]:
    return {
        "fp16": lambda: plain(Float16Codec("fp16")),
        "int8": lambda: plain(Int8Codec("int8", block_size=4096)),
        "int4": lambda: plain(Int4Codec("int4", block_size=1024)),
        "sign1bit_ef": lambda: with_feedback(Sign1BitCodec("sign1bit", chunk_size=4096)),
        "topk1pct_ef": lambda: with_feedback(TopKCodec("topk1pct", ratio=0.01, selection="sampled", values="fp16")),
    }


def hivemind_subject(compression: str) -> Subject:
    from hivemind.compression import deserialize_torch_tensor, serialize_torch_tensor
    from hivemind.proto import runtime_pb2

    kind = getattr(runtime_pb2.CompressionType, compression)

    def encode(g: torch.Tensor) -> bytes:
        return serialize_torch_tensor(g, kind).SerializeToString()  # type: ignore[no-any-return]

    def decode(payload: bytes) -> torch.Tensor:
        return deserialize_torch_tensor(runtime_pb2.Tensor.FromString(payload))  # type: ignore[no-any-return]

    return Subject(encode, decode)


def baselines(numel: int) -> dict[str, Callable[[], Subject]]:
    def naive(make: Callable[[], NaiveBlockQuant | NaiveSign1BitEF | NaiveTopKEF]) -> Callable[[], Subject]:
        def build() -> Subject:
            codec = make()
            return Subject(codec.encode, codec.decode)

        return build

    return {
        "naive_int8": naive(lambda: NaiveBlockQuant(numel, bits=8, block=4096)),
        "naive_int4": naive(lambda: NaiveBlockQuant(numel, bits=4, block=1024)),
        "naive_sign1bit_ef": naive(lambda: NaiveSign1BitEF(numel, chunk=4096)),
        "naive_topk1pct_ef": naive(lambda: NaiveTopKEF(numel, ratio=0.01)),
        "hivemind_fp16": lambda: hivemind_subject("FLOAT16"),
        "hivemind_uniform8bit": lambda: hivemind_subject("UNIFORM_8BIT"),
        "hivemind_blockwise8bit": lambda: hivemind_subject("BLOCKWISE_8BIT"),
    }


def roofs(g: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(add_ roof, copy roof) in GB/s of fp32 elements, each read and written once."""
    x, y = g.clone(), torch.empty_like(g)
    gb = 4 * g.numel() / 1e9
    return gb / best_seconds(lambda: x.add_(1.0), repeats), gb / best_seconds(lambda: y.copy_(x), repeats)


def checks(codec_rows: dict[str, Entry], baseline_rows: dict[str, Entry]) -> dict[str, bool]:
    """The project's targets; an unavailable figure fails its check."""

    def get(rows: dict[str, Entry], name: str, key: str) -> float:
        value = rows.get(name, {}).get(key)
        return value if isinstance(value, float) else math.nan

    results: dict[str, bool] = {}
    for name, naive in (("int8", "naive_int8"), ("int4", "naive_int4"), ("sign1bit_ef", "naive_sign1bit_ef")):
        for way in ("encode", "decode"):
            ours, theirs = get(codec_rows, name, f"{way}_gbps"), get(baseline_rows, naive, f"{way}_gbps")
            results[f"{name} {way} >= 1 GB/s"] = ours >= 1.0
            results[f"{name} {way} >= 2x {naive}"] = ours >= 2 * theirs
    results["topk1pct_ef encode >= 0.5 GB/s"] = get(codec_rows, "topk1pct_ef", "encode_gbps") >= 0.5
    results["topk1pct_ef ratio <= 1/50"] = get(codec_rows, "topk1pct_ef", "ratio") <= 1 / 50
    results["sign1bit_ef ratio <= 1/31"] = get(codec_rows, "sign1bit_ef", "ratio") <= 1 / 31
    return results


def print_table(title: str, rows: dict[str, Entry], roof: float) -> None:
    columns = ("enc GB/s", "dec GB/s", "enc/roof", "dec/roof", "ratio", "1/ratio", "rel err")
    print(f"\n{title:<24} " + " ".join(f"{c:>9}" for c in columns))
    for name, row in rows.items():
        if "error" in row:
            print(f"{name:<24} unavailable: {row['error']}")
            continue
        enc, dec, ratio, err = (float(row[k]) for k in ("encode_gbps", "decode_gbps", "ratio", "rel_error"))
        print(
            f"{name:<24} {enc:>9.3f} {dec:>9.3f} {enc / roof:>9.1%} {dec / roof:>9.1%} {ratio:>9.5f} "
            f"{1 / ratio:>9.1f} {err:>9.2e}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--numel", type=int, default=25_000_000, help="elements of the fp32 test tensor")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (best one counts)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--load", type=int, default=0, help="also measure beside N busy processes (and 1 thread)")
    args = parser.parse_args(argv)
    if args.numel < 1 or args.repeats < 1 or args.threads < 0 or args.load < 0:
        parser.error("--numel and --repeats must be positive, --threads and --load not negative")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(args.threads or threads)
        return run(args.json, args.numel, args.repeats, args.load)
    finally:
        torch.set_num_threads(threads)


def codec_rows_at(g: torch.Tensor, repeats: int, threads: int, load: int) -> dict[str, Entry]:
    """Our codecs' figures on ``threads`` torch threads beside ``load`` busy processes."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with busy_processes(load):
            return {name: measure(make, g, repeats) for name, make in codecs().items()}
    finally:
        torch.set_num_threads(previous)


def load_section(
    idle_1t: dict[str, Entry], idle: dict[str, Entry], loaded: dict[str, Entry]
) -> dict[str, dict[str, float | bool | None]]:
    """Per codec and direction: idle 1-thread, idle default and loaded GB/s, loaded / idle-1t and the 50% check."""
    table: dict[str, dict[str, float | bool | None]] = {}
    for name in loaded:
        for way in ("encode", "decode"):
            key = f"{way}_gbps"
            table[f"{name} {way}"] = load_row(*(rows.get(name, {}).get(key) for rows in (idle_1t, idle, loaded)))
    return table


def print_load(count: int, threads: int, table: dict[str, dict[str, float | bool | None]]) -> None:
    print(
        f"\nbeside {count} busy processes ({KIND}); {threads} torch threads when loaded; target loaded >= 50% idle-1t"
    )
    columns = ("idle-1t", "idle", "loaded", "ld/1t")
    print(f"{'codec, direction':<24} " + " ".join(f"{c:>9}" for c in columns))
    for label, row in table.items():
        cells = [row["idle_1t_gbps"], row["idle_gbps"], row["loaded_gbps"]]
        ratio = row["loaded_over_idle_1t"]
        figures = " ".join(f"{c:>9.3f}" if isinstance(c, float) else f"{'-':>9}" for c in cells)
        shown = f"{ratio:>9.0%}" if isinstance(ratio, float) else f"{'-':>9}"
        print(f"{label:<24} {figures}{shown}  {'PASS' if row['at_least_half'] else 'FAIL'}")


def run(path: Path, numel: int, repeats: int, load: int = 0) -> int:
    """Measure everything, print the tables and the targets, write the JSON to ``path``."""
    generator = torch.Generator().manual_seed(0)
    g = torch.randn(numel, generator=generator) * torch.rand(numel, generator=generator).pow(4)
    idle_1t = codec_rows_at(g, repeats, 1, 0) if load else {}
    before = roofs(g, repeats)
    codec_rows = {name: measure(make, g, repeats) for name, make in codecs().items()}
    baseline_rows = {name: measure(make, g, repeats) for name, make in baselines(numel).items()}
    after = roofs(g, repeats)  # measured on both sides, so a transient stall cannot skew every fraction
    roof, copy_roof = max(before[0], after[0]), max(before[1], after[1])
    results = checks(codec_rows, baseline_rows)
    meta = {
        "numel": numel,
        "repeats": repeats,
        "distribution": DISTRIBUTION,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "copy_roof_gbps": copy_roof,
        "checks": results,
    }
    print(f"{numel:,} fp32 elements, {DISTRIBUTION}; best of {repeats} after a warm-up")
    print(f"{torch.get_num_threads()} torch threads; roofs: add_ {roof:.2f} GB/s, copy {copy_roof:.2f} GB/s")
    print_table("codec", codec_rows, roof)
    print_table("baseline", baseline_rows, roof)
    print("\ntargets:")
    for label, passed in results.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {label}")
    document: dict[str, object] = {"roof_gbps": roof, "codecs": codec_rows, "baselines": baseline_rows, "meta": meta}
    if load:
        threads = torch.get_num_threads()
        loaded = codec_rows_at(g, repeats, threads, load)
        table = load_section(idle_1t, codec_rows, loaded)
        print_load(load, threads, table)
        document["load"] = {
            "processes": load,
            "kind": KIND,
            "threads": threads,
            "idle_1t": idle_1t,
            "loaded": loaded,
            "table": table,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
