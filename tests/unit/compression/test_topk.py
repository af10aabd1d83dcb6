"""Top-k sparsification: selection guarantee, value formats, index packing, payload size, hostile payloads."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmnet.compression import topk, topk_payload
from swarmnet.compression.base import Codec
from swarmnet.compression.bitpack import (
    bit_width,
    pack_bits,
    pack_indices,
    packed_size,
    unpack_bits,
    unpack_indices,
)
from swarmnet.compression.cast import Float16Codec
from swarmnet.compression.topk import TopKCodec, payload_size, selection_window
from swarmnet.compression.wire import CodecId, pack, unpack
from swarmnet.errors import CodecError

FORMATS = ("fp16", "int8", "sign")
# The params struct, replicated here on purpose: a change to it is a wire-format change.
PARAMS = struct.Struct("<QQfBB2x")
FORMAT_CODES = {"fp16": 0, "int8": 1, "sign": 2}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def gradient_like(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=generator) * torch.rand(n, generator=generator).pow(4)


def params_of(payload: bytes) -> tuple[int, int, float, int, int]:
    count, first, scale, width, fmt = PARAMS.unpack(unpack(payload)[1][0])
    return count, first, scale, width, fmt


def sent_indices(codec: TopKCodec, payload: bytes) -> torch.Tensor:
    """Positions the payload carries, read through the decoder (values may legitimately be 0)."""
    header, sections = unpack(payload)
    indices, _ = topk_payload.parse(header, sections)
    return torch.from_numpy(indices)


def expected_size(count: int, width: int, values: str, ndim: int) -> int:
    """The documented formula, written out independently of ``topk.payload_size``."""
    header = 12 + 8 * (ndim + 3) + 4
    value_bytes = {"fp16": 2 * count, "int8": count, "sign": math.ceil(count / 8)}[values]
    return header + 24 + math.ceil(max(count - 1, 0) * width / 8) + value_bytes


def assert_top_m(x: torch.Tensor, indices: torch.Tensor) -> None:
    """``indices`` are exactly the largest magnitudes of ``x`` (ties at the boundary either way)."""
    magnitude = x.reshape(-1).double().abs()
    chosen = torch.zeros(magnitude.numel(), dtype=torch.bool)
    chosen[indices] = True
    if chosen.all() or not chosen.any():
        return
    assert float(magnitude[chosen].min()) >= float(magnitude[~chosen].max())


# --- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": 0.0},
        {"ratio": 1.5},
        {"ratio": float("nan")},
        {"selection": "approx"},
        {"values": "int4"},
        {"sample_size": 0},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        TopKCodec("bad", **kwargs)


@pytest.mark.parametrize(
    ("numel", "ratio", "k"), [(0, 0.01, 0), (1, 0.01, 1), (2, 0.01, 1), (250, 0.01, 3), (7, 1.0, 7)]
)
def test_k_is_ceil_of_ratio_times_numel(numel: int, ratio: float, k: int) -> None:
    assert TopKCodec("t", ratio=ratio).k_for(numel) == k


def test_repr_names_the_configuration() -> None:
    assert "ratio=0.05" in repr(TopKCodec("t", ratio=0.05, values="sign"))


# --- selection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", FORMATS)
def test_exact_selection_is_torch_topk(values: str) -> None:
    x = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    codec = TopKCodec("exact", ratio=0.05, selection="exact", values=values)  # type: ignore[arg-type]
    indices = sent_indices(codec, codec.encode(x))
    assert indices.tolist() == sorted(torch.topk(x.abs(), 250).indices.tolist())


@pytest.mark.parametrize("seed", range(4))
def test_sampled_selection_stays_in_window_and_keeps_the_mass(seed: int) -> None:
    x = gradient_like(300_000, seed)
    codec = TopKCodec("sampled", ratio=0.01, seed=seed)
    k = codec.k_for(x.numel())
    indices = sent_indices(codec, codec.encode(x))
    low, cap = selection_window(k)
    assert low <= indices.numel() <= cap
    assert abs(indices.numel() - k) < 0.1 * k  # 656 sampled hits: a few percent, not 30
    assert_top_m(x, indices)
    exact_mass = float(torch.topk(x.abs(), k).values.double().pow(2).sum())
    assert float(x[indices].double().pow(2).sum()) >= 0.9 * exact_mass


def _distributions() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    n = 2000
    spiky = torch.randn(n, generator=g) * 1e-3
    spiky[torch.randperm(n, generator=g)[:30]] = 1e3
    return {
        "gaussian": torch.randn(n, generator=g),
        "gradient": gradient_like(n, 3),
        "spiky": spiky,
        "ties": torch.randint(-3, 4, (n,), generator=g).float(),
        "zeros": torch.zeros(n),
        "sparse": torch.randn(n, generator=g) * (torch.rand(n, generator=g) < 0.02),
    }


def test_every_refinement_path_keeps_the_guarantee(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {"refine": 0, "exact": 0, "passes": 0}

    def spy(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(topk, "_refine", spy("refine", topk._refine))
    monkeypatch.setattr(topk, "_exact_topk", spy("exact", topk._exact_topk))
    monkeypatch.setattr(topk, "_threshold_pass", spy("passes", topk._threshold_pass))
    # Tiny samples make the threshold estimate wild, so every branch runs: over-selection trimmed,
    # a second lower threshold, and the exact fallback.
    for name, x in _distributions().items():
        for sample_size, ratio in ((1, 0.3), (20, 0.05), (500, 0.01)):
            for seed in range(12):
                codec = TopKCodec("t", ratio=ratio, sample_size=sample_size, seed=seed)
                k = codec.k_for(x.numel())
                low, cap = selection_window(k)
                passes = calls["passes"]
                indices = sent_indices(codec, codec.encode(x))
                assert low <= indices.numel() <= cap, (name, sample_size, seed)
                assert calls["passes"] - passes <= 2  # at most two threshold passes over the tensor
                assert_top_m(x, indices)
    assert min(calls.values()) > 0, calls
    assert calls["passes"] > 6 * 3 * 12  # some encodes took the second threshold


def test_sampling_is_skipped_when_the_tensor_is_no_bigger_than_the_sample() -> None:
    x = torch.randn(1000, generator=torch.Generator().manual_seed(2))
    sampled = TopKCodec("s", ratio=0.1, sample_size=1000)
    exact = TopKCodec("e", ratio=0.1, selection="exact")
    assert sampled.encode(x) == exact.encode(x)


# --- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("selection", ["exact", "sampled"])
@pytest.mark.parametrize("values", FORMATS)
def test_values_round_trip_within_their_bounds(values: str, selection: str) -> None:
    x = gradient_like(100_000, 5) * 3
    codec = TopKCodec("t", ratio=0.02, selection=selection, values=values, sample_size=4096)  # type: ignore[arg-type]
    payload = codec.encode(x)
    decoded = codec.decode(payload)
    indices = sent_indices(codec, payload)
    unsent = torch.ones(x.numel(), dtype=torch.bool)
    unsent[indices] = False
    assert bool((decoded[unsent] == 0).all())
    sent, got = x[indices], decoded[indices]
    if values == "fp16":
        torch.testing.assert_close(got, sent, rtol=1e-3, atol=0)
    elif values == "int8":
        absmax = float(sent.abs().max())
        assert float((got - sent).abs().max()) <= absmax / 254 * (1 + 1e-5)
        assert params_of(payload)[2] == absmax
    else:
        scale = float(sent.abs().double().mean())
        assert torch.equal(got.abs(), torch.full_like(got, got.abs()[0].item()))
        assert got.abs()[0].item() == pytest.approx(scale, rel=1e-6)
        assert torch.equal(got < 0, sent < 0)


def test_fp16_values_saturate_and_non_finite_inputs_stay_finite() -> None:
    x = torch.tensor([1e6, -1e6, float("inf"), float("-inf"), float("nan"), 1.0, 0.5, 0.25])
    for values in FORMATS:
        codec = TopKCodec("t", ratio=1.0, values=values)  # type: ignore[arg-type]
        decoded = codec.decode(codec.encode(x))
        assert bool(torch.isfinite(decoded).all()), values
    fp16 = TopKCodec("t", ratio=1.0).decode(TopKCodec("t", ratio=1.0).encode(x))
    assert fp16[:4].tolist() == [65504.0, -65504.0, 65504.0, -65504.0]
    assert fp16[4].item() == 0.0


@pytest.mark.parametrize("values", ["int8", "sign"])
def test_all_zero_selection_has_zero_scale(values: str) -> None:
    codec = TopKCodec("t", ratio=0.5, values=values)  # type: ignore[arg-type]
    payload = codec.encode(torch.zeros(10))
    assert params_of(payload)[2] == 0.0
    assert torch.equal(codec.decode(payload), torch.zeros(10))


# --- awkward inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", FORMATS)
@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.zeros(0),
        lambda: torch.zeros(3, 0, 2),
        lambda: torch.tensor([-2.5]),
        lambda: torch.tensor([1.0, -3.0]),
        lambda: torch.randn(100),  # numel < sample_size
        lambda: torch.randn(4, 5, 6),
        lambda: torch.randn(30, 40).t(),  # non-contiguous
        lambda: torch.randn(500).half(),
        lambda: torch.randn(500).bfloat16(),
        lambda: torch.randn(7, 9).double(),
        lambda: torch.tensor(3.0),  # 0-d
    ],
)
def test_awkward_shapes_and_dtypes_round_trip(make: Callable[[], torch.Tensor], values: str) -> None:
    x = make()
    for ratio in (0.1, 1.0):
        codec = TopKCodec("t", ratio=ratio, values=values, sample_size=64)  # type: ignore[arg-type]
        payload = codec.encode(x)
        decoded = codec.decode(payload)
        assert decoded.shape == x.shape
        assert decoded.dtype == x.dtype
        count = params_of(payload)[0]
        assert count == codec.k_for(x.numel()) or codec.selection == "sampled"
        if ratio == 1.0:
            assert count == x.numel()  # k == numel: everything is sent
        if values == "fp16" and x.numel():
            flat, back = x.reshape(-1).float(), decoded.reshape(-1).float()
            chosen = sent_indices(codec, payload)
            torch.testing.assert_close(
                back[chosen], flat[chosen], rtol=1e-2 if x.dtype == torch.bfloat16 else 1e-3, atol=0
            )


# --- index packing -------------------------------------------------------------------------------


@pytest.mark.parametrize("width", range(1, 65))
def test_bit_packing_round_trips_every_width(width: int) -> None:
    rng = np.random.default_rng(width)
    top = (1 << width) - 1
    values = rng.integers(0, top, size=257, dtype=np.uint64, endpoint=True)
    values[1:6] = 0  # gaps of 0 after a first value
    values[-1] = top
    data = pack_bits(values, width)
    assert len(data) == packed_size(values.size, width)
    assert np.array_equal(unpack_bits(data, values.size, width), values)


@FUZZ
@given(
    st.integers(1, 40).flatmap(lambda w: st.tuples(st.just(w), st.lists(st.integers(0, (1 << w) - 1), max_size=70)))
)
def test_bit_packing_round_trips_random_lists(case: tuple[int, list[int]]) -> None:
    width, values = case
    array = np.array(values, dtype=np.uint64)
    assert np.array_equal(unpack_bits(pack_bits(array, width), len(values), width), array)


def test_bit_packing_refuses_what_it_cannot_represent() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError, match="negative"):
        pack_bits(np.array([-1]), 3)
    with pytest.raises(ValueError, match="outside"):
        pack_bits(np.array([0]), 0)
    with pytest.raises(ValueError, match="take 2 bytes"):
        unpack_bits(b"\x00", 3, 5)
    with pytest.raises(ValueError, match="padding"):
        unpack_bits(b"\xff\xff", 3, 5)
    assert [bit_width(0), bit_width(1), bit_width(2), bit_width(1 << 40)] == [1, 1, 2, 41]


@FUZZ
@given(st.sets(st.integers(0, 1 << 40), max_size=60))
def test_index_coding_round_trips(positions: set[int]) -> None:
    indices = np.array(sorted(positions), dtype=np.int64)
    first, width, data = pack_indices(indices)
    assert width == (int(np.diff(indices).max()).bit_length() if indices.size > 1 else 1)
    assert len(data) == packed_size(max(indices.size - 1, 0), width)
    assert np.array_equal(unpack_indices(data, indices.size, first, width, (1 << 40) + 1), indices)


@pytest.mark.parametrize(
    ("data", "count", "first", "width", "message"),
    [
        (b"", 0, 1, 1, "no indices but first index 1"),
        (b"\0", 0, 0, 1, "no indices"),
        (b"", 1, 10, 1, "first index 10 out of range"),
        (pack_bits(np.array([2, 0]), 2), 3, 0, 2, "not strictly increasing"),
        (pack_bits(np.array([2, 3]), 2), 3, 4, 2, None),  # 4, 6, 9: fine
        (pack_bits(np.array([2, 3]), 2), 3, 5, 2, "run past"),  # 5, 7, 10
        (pack_bits(np.array([2, 3]), 2), 3, 0, 5, "take 2 bytes"),
    ],
)
def test_index_decoding_refuses_bad_streams(
    data: bytes, count: int, first: int, width: int, message: str | None
) -> None:
    if message is None:
        assert unpack_indices(data, count, first, width, 10).tolist() == [4, 6, 9]
        return
    with pytest.raises(ValueError, match=message):
        unpack_indices(data, count, first, width, 10)


# --- payload size --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", FORMATS)
@pytest.mark.parametrize("shape", [(0,), (1,), (2,), (1000,), (37, 29), (20_000,), (5, 6, 700)])
def test_payload_size_is_exactly_the_documented_formula(values: str, shape: tuple[int, ...]) -> None:
    x = gradient_like(math.prod(shape), 11).reshape(shape)
    codec = TopKCodec("t", ratio=0.03, values=values, sample_size=512)  # type: ignore[arg-type]
    payload = codec.encode(x)
    count, _, _, width, fmt = params_of(payload)
    indices = sent_indices(codec, payload)
    gaps = torch.diff(indices)
    assert width == (int(gaps.max()).bit_length() if gaps.numel() else 1)
    assert fmt == FORMAT_CODES[values]
    assert len(payload) == expected_size(count, width, values, len(shape))
    assert len(payload) == payload_size(count, width, values, len(shape))  # type: ignore[arg-type]
    # The documented worst case: the cap and the widest possible gap.
    cap = selection_window(codec.k_for(x.numel()))[1]
    widest = max(1, (x.numel() - 1).bit_length())
    assert len(payload) <= expected_size(cap, widest, values, len(shape))


@pytest.mark.parametrize("values", FORMATS)
def test_estimated_ratio_is_close_for_spread_indices(values: str) -> None:
    x = gradient_like(200_000, 4)
    codec = TopKCodec("t", ratio=0.01, values=values)  # type: ignore[arg-type]
    actual = len(codec.encode(x)) / (x.numel() * 4)
    assert codec.estimated_ratio(x.numel()) == pytest.approx(actual, rel=0.12)
    assert codec.estimated_ratio(x.numel(), torch.float16) == pytest.approx(2 * codec.estimated_ratio(x.numel()))
    assert codec.estimated_ratio(0) == 1.0


def test_one_percent_fp16_is_under_a_fiftieth() -> None:
    codec = TopKCodec("t", ratio=0.01)
    assert codec.estimated_ratio(25_000_000) < 1 / 50
    assert len(codec.encode(gradient_like(200_000))) < 200_000 * 4 / 50


# --- hostile payloads ----------------------------------------------------------------------------


def build(
    shape: tuple[int, ...],
    count: int,
    first: int,
    width: int,
    indices: bytes,
    values: bytes,
    fmt: int = 0,
    scale: float = 0.0,
    extra: list[bytes] | None = None,
) -> bytes:
    """A correctly framed (CRC and all) TOPK payload with arbitrary contents."""
    params = PARAMS.pack(count, first, scale, width, fmt)
    return pack(CodecId.TOPK, torch.float32, shape, [params, indices, values, *(extra or [])])


CODEC = TopKCodec("t")
GOOD_GAPS = pack_bits(np.array([3, 1, 5]), 3)  # indices 2, 5, 6, 11
GOOD_VALUES = np.array([1, -2, 3, -4], dtype="<f2").tobytes()


def test_hand_built_payload_decodes() -> None:
    decoded = CODEC.decode(build((12,), 4, 2, 3, GOOD_GAPS, GOOD_VALUES))
    expected = torch.zeros(12)
    expected[[2, 5, 6, 11]] = torch.tensor([1.0, -2, 3, -4])
    assert torch.equal(decoded, expected)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (build((12,), 13, 0, 3, b"", b""), "claims 13 entries"),
        (build((12,), 4, 2, 0, b"", GOOD_VALUES), "index width 0"),
        (build((12,), 4, 2, 65, b"", GOOD_VALUES), "index width 65"),
        (build((12,), 4, 2, 5, pack_bits(np.array([3, 1, 5]), 5), GOOD_VALUES), "index width 5 outside 1..4"),
        (build((12,), 4, 12, 3, GOOD_GAPS, GOOD_VALUES), "first index 12 out of range"),
        (build((12,), 0, 3, 1, b"", b""), "no indices but first index"),
        (build((12,), 4, 2, 3, GOOD_GAPS, GOOD_VALUES, fmt=3), "unknown value format 3"),
        (build((12,), 4, 2, 3, GOOD_GAPS, GOOD_VALUES, scale=1.0), "fp16 values with a scale"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\1" * 4, fmt=1, scale=float("nan")), "not a finite"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\1" * 4, fmt=1, scale=float("inf")), "not a finite"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\1", fmt=2, scale=-1.0), "not a finite non-negative"),
        (build((12,), 4, 2, 3, pack_bits(np.array([3, 0, 5]), 3), GOOD_VALUES), "not strictly increasing"),
        (build((12,), 4, 2, 3, pack_bits(np.array([3, 1, 6]), 3), GOOD_VALUES), "run past"),
        (build((12,), 4, 2, 3, GOOD_GAPS[:-1], GOOD_VALUES), "sections"),  # truncated indices
        (build((12,), 4, 2, 3, GOOD_GAPS + b"\0", GOOD_VALUES), "sections"),  # extended indices
        (build((12,), 4, 2, 3, GOOD_GAPS, GOOD_VALUES[:-2]), "sections"),  # truncated values
        (build((12,), 4, 2, 3, GOOD_GAPS, GOOD_VALUES + b"\0\0"), "sections"),  # extended values
        (build((12,), 4, 2, 3, GOOD_GAPS, GOOD_VALUES, extra=[b""]), "expected 3"),
        (pack(CodecId.TOPK, torch.float32, (12,), [b"\0" * 23, GOOD_GAPS, GOOD_VALUES]), "expected 3"),
        (build((12,), 4, 2, 3, bytes([GOOD_GAPS[0], GOOD_GAPS[1] | 0x80]), GOOD_VALUES), "padding"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\0\x7c" + GOOD_VALUES[2:]), "non-finite fp16"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\0\xfe" + GOOD_VALUES[2:]), "non-finite fp16"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\x80\1\1\1", fmt=1, scale=1.0), "-128"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\1" * 4, fmt=1, scale=2.0**128 * 0.99), "would overflow"),
        (build((12,), 4, 2, 3, GOOD_GAPS, b"\xf0", fmt=2, scale=1.0), "padding bits after the last sign"),
    ],
)
def test_malformed_payloads_are_codec_errors(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        CODEC.decode(payload)
    with pytest.raises(CodecError, match=message):
        CODEC.decode_accumulate(payload, torch.zeros(12))


def test_wrapping_gaps_are_caught() -> None:
    # Gaps near 2**64 wrap uint64 back into range; the decoder must see the wrap, not trust the sum.
    # 2**62 elements (allowed by a reckless max_elements) take 62-bit gaps; four of 2**62 - 1 after index 3
    # reach 2**64 - 1, and one more of 10 wraps around to 8.
    gaps = np.array([(1 << 62) - 1] * 4 + [10], dtype=np.uint64)
    payload = build((1 << 62,), 6, 3, 62, pack_bits(gaps, 62), b"\0" * 12)
    with pytest.raises(CodecError, match="run past"):
        CODEC.decode(payload, max_elements=1 << 64)


def test_huge_claimed_shape_with_bad_indices_fails_before_allocating() -> None:
    n = 1 << 31  # 8 GiB of fp32 if anyone allocated it
    gaps = pack_bits(np.array([1, n // 2], dtype=np.uint64), 31)
    payload = build((n,), 3, n - 5, 31, gaps, b"\0" * 6)
    with pytest.raises(CodecError, match="over the limit"):
        CODEC.decode(payload)  # the default bound
    with pytest.raises(CodecError, match="run past"):
        CODEC.decode(payload, max_elements=n)  # a caller's bound that allows it: the indices still refuse it


def test_truncated_or_foreign_payloads_are_refused() -> None:
    payload = CODEC.encode(torch.randn(1000))
    with pytest.raises(CodecError):
        CODEC.decode(payload[:-1])
    with pytest.raises(CodecError, match="cannot decode a FP16"):
        CODEC.decode(Float16Codec("fp16").encode(torch.randn(4)))
    with pytest.raises(CodecError, match="cannot decode a FP16"):
        CODEC.decode_accumulate(Float16Codec("fp16").encode(torch.randn(4)), torch.zeros(4))
    with pytest.raises(CodecError, match="over the limit"):
        CODEC.decode_accumulate(payload, torch.zeros(999))
    with pytest.raises(CodecError, match="the target has 1001"):
        CODEC.decode_accumulate(payload, torch.zeros(1001))


@FUZZ
@given(
    numel=st.integers(0, 300),
    count=st.integers(0, 40),
    first=st.integers(0, 310),
    width=st.integers(0, 70),
    fmt=st.integers(0, 3),
    scale=st.floats(allow_nan=True, allow_infinity=True, width=32),
    body=st.binary(max_size=200),
    split=st.integers(0, 200),
)
def test_random_params_never_crash_the_decoder(
    numel: int, count: int, first: int, width: int, fmt: int, scale: float, body: bytes, split: int
) -> None:
    payload = build((numel,), count, first, width, body[:split], body[split:], fmt=fmt, scale=scale)
    try:
        decoded = CODEC.decode(payload)
    except CodecError:
        return
    assert decoded.shape == (numel,)
    assert int((decoded != 0).sum()) <= count
    assert bool(torch.isfinite(decoded).all())


@FUZZ
@given(st.binary(min_size=1, max_size=64), st.integers(0, 10_000))
def test_random_mutations_of_a_real_payload_never_crash(junk: bytes, where: int) -> None:
    x = torch.randn(3000, generator=torch.Generator().manual_seed(9))
    header, sections = unpack(TopKCodec("t", ratio=0.02, values="int8").encode(x))
    blob = b"".join(bytes(s) for s in sections)
    where %= len(blob)
    mutated = blob[:where] + junk + blob[where + len(junk) :]
    sizes = [len(s) for s in sections]
    parts = [mutated[: sizes[0]], mutated[sizes[0] : sizes[0] + sizes[1]], mutated[sizes[0] + sizes[1] :]]
    try:
        decoded = CODEC.decode(pack(CodecId.TOPK, header.dtype, header.shape, parts))
    except CodecError:
        return
    assert decoded.shape == x.shape


# --- fused paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", FORMATS)
@pytest.mark.parametrize("selection", ["exact", "sampled"])
@pytest.mark.parametrize(
    ("shape", "dtype", "ratio"),
    [
        ((50_000,), torch.float32, 0.01),
        ((40, 300), torch.float16, 0.05),
        ((3, 7), torch.bfloat16, 1.0),
        ((1,), torch.float32, 0.01),
    ],
)
def test_fused_feedback_equals_the_generic_one(
    values: str, selection: str, shape: tuple[int, ...], dtype: torch.dtype, ratio: float
) -> None:
    codec = TopKCodec("t", ratio=ratio, selection=selection, values=values, sample_size=2048)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(13)
    fused = torch.randn(math.prod(shape), generator=generator) * 0.1
    generic = fused.clone()
    for _ in range(3):  # a few steps, so the residual carries real history
        grad = gradient_like(math.prod(shape), int(torch.randint(1000, (1,), generator=generator))).reshape(shape)
        grad = grad.to(dtype)
        assert codec.encode_with_feedback(grad, fused) == Codec.encode_with_feedback(codec, grad, generic)
        assert torch.equal(fused, generic)


def test_fused_feedback_equals_the_generic_one_in_every_refinement_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel pass zeroes every entry it selects in the residual; when refinement then drops some
    # of them (or re-selects with a second threshold or an exact top-k), they must get their v back.
    calls: dict[str, int] = {"refine": 0, "exact": 0, "passes": 0}

    def spy(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(topk, "_refine", spy("refine", topk._refine))
    monkeypatch.setattr(topk, "_exact_topk", spy("exact", topk._exact_topk))
    monkeypatch.setattr(topk, "_threshold_pass", spy("passes", topk._threshold_pass))
    generator = torch.Generator().manual_seed(17)
    for name, x in _distributions().items():
        for sample_size, ratio in ((1, 0.3), (20, 0.05), (500, 0.01)):
            for seed in range(6):
                for values in FORMATS:
                    codec = TopKCodec("t", ratio=ratio, values=values, sample_size=sample_size, seed=seed)  # type: ignore[arg-type]
                    fused = torch.randn(x.numel(), generator=generator) * 0.3
                    generic = fused.clone()
                    payload = codec.encode_with_feedback(x, fused)
                    assert payload == Codec.encode_with_feedback(codec, x, generic), (name, sample_size, seed)
                    assert torch.equal(fused, generic), (name, sample_size, seed, values)
    assert min(calls.values()) > 0, calls
    assert calls["passes"] > 6 * 3 * 6 * len(FORMATS)  # some encodes took the second threshold


def test_fused_feedback_error_is_exactly_what_was_not_sent() -> None:
    codec = TopKCodec("t", ratio=0.1)
    grad = torch.tensor([0.5, -0.25, 0.125, 3.0, 0.0, -7.0, 1.0, 2.0, 0.75, 0.0625])
    residual = torch.zeros(10)
    payload = codec.encode_with_feedback(grad, residual)
    decoded = codec.decode(payload)
    assert decoded.tolist() == [0, 0, 0, 0, 0, -7.0, 0, 0, 0, 0]  # exact in fp16: no error left
    assert torch.equal(residual, grad - decoded)


def test_fused_feedback_falls_back_for_odd_residuals() -> None:
    codec = TopKCodec("t", ratio=0.2)
    grad = torch.randn(20, generator=torch.Generator().manual_seed(4))
    odd = torch.zeros(40)[::2]  # non-contiguous: the generic path handles it
    reference = torch.zeros(20)
    assert codec.encode_with_feedback(grad, odd) == Codec.encode_with_feedback(codec, grad, reference)
    assert torch.equal(odd, reference)


@pytest.mark.parametrize("alpha", [1.0, 0.5, -2.0, 0.3])
@pytest.mark.parametrize("values", FORMATS)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64, torch.float16])
def test_decode_accumulate_adds_alpha_times_decode(alpha: float, values: str, out_dtype: torch.dtype) -> None:
    codec = TopKCodec("t", ratio=0.05, values=values)  # type: ignore[arg-type]
    x = gradient_like(2400, 6).reshape(40, 60)
    payload = codec.encode(x)
    start = torch.randn(40, 60, generator=torch.Generator().manual_seed(8)).to(out_dtype)
    expected = start.clone()
    Codec.decode_accumulate(codec, payload, expected, alpha)
    for out in (start.clone(), start.clone().t().contiguous().t()):  # contiguous, then a transposed layout
        codec.decode_accumulate(payload, out, alpha)
        if out_dtype == torch.float16 and alpha == 0.3:
            # torch's own fp16 add_ rounds alpha * value differently in its vector and scalar loops,
            # so even the generic path is only defined to one half-precision rounding.
            decoded = codec.decode(payload).to(out_dtype).double()
            bound = (start.double().abs() + abs(alpha) * decoded.abs()) * 2.0**-10
            assert bool(((out.double() - expected.double()).abs() <= bound).all())
        else:
            assert torch.equal(out, expected)


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", FORMATS)
def test_same_input_and_seed_give_identical_bytes(values: str) -> None:
    x = gradient_like(150_000, 21)
    first = TopKCodec("a", ratio=0.01, values=values, seed=5).encode(x)  # type: ignore[arg-type]
    second = TopKCodec("b", ratio=0.01, values=values, seed=5).encode(x.clone())  # type: ignore[arg-type]
    assert first == second
