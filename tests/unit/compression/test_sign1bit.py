"""sign1bit: exact decoded values (+-chunk mean |x|), exact sizes, fused error feedback, hostile payloads."""

from __future__ import annotations

import math
import struct

import pytest
import torch

from swarmnet.compression import blockwise
from swarmnet.compression.base import Codec
from swarmnet.compression.sign1bit import Sign1BitCodec
from swarmnet.compression.wire import CodecId, pack, unpack
from swarmnet.errors import CodecError
from swarmnet.kernels import sign as sign_kernels

CHUNK = 16
CODEC = Sign1BitCodec("sign1", CHUNK)
SIZES = [0, 1, 7, 8, 9, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 3]


def header_len(ndim: int) -> int:
    return 12 + 8 * (ndim + 3) + 4  # fixed part, dimensions, three section lengths, CRC


def payload_len(shape: tuple[int, ...], chunk: int = CHUNK) -> int:
    numel = math.prod(shape)
    return header_len(len(shape)) + 4 + 4 * math.ceil(numel / chunk) + math.ceil(numel / 8)


def expected_decode(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """where(x >= 0, +s, -s) with s the mean |x| of each element's chunk, computed in fp64."""
    flat = x.reshape(-1).double()
    scales = torch.stack([part.abs().mean() for part in torch.split(flat, chunk)]) if flat.numel() else flat
    per_element = scales.repeat_interleave(chunk)[: flat.numel()]
    return torch.where(flat >= 0, per_element, -per_element).view(x.shape)


@pytest.mark.parametrize("n", SIZES)
def test_decodes_to_plus_minus_chunk_mean_abs(n: int) -> None:
    x = torch.randn(n) * torch.rand(n).pow(4) * 10
    payload = CODEC.encode(x)
    assert len(payload) == payload_len((n,))
    y = CODEC.decode(payload)
    assert (y.dtype, y.shape) == (torch.float32, x.shape)
    assert torch.allclose(y.double(), expected_decode(x, CHUNK), rtol=1e-6, atol=0)
    if n:
        assert CODEC.estimated_ratio(n) == (len(payload) - header_len(1)) / (4 * n)


@pytest.mark.parametrize("shape", [(4095,), (4096,), (3, 700, 5), (2, 4097), ()])
def test_default_chunk_and_shapes(shape: tuple[int, ...]) -> None:
    codec = Sign1BitCodec("sign1")
    x = torch.randn(shape)
    payload = codec.encode(x)
    assert len(payload) == payload_len(shape, 4096)
    y = codec.decode(payload)
    assert y.shape == x.shape
    assert torch.allclose(y.double(), expected_decode(x, 4096), rtol=1e-6, atol=0)


def test_large_tensors_shrink_to_a_31st() -> None:
    n = 1 << 20
    payload = Sign1BitCodec("sign1").encode(torch.randn(n))
    assert len(payload) <= 4 * n / 31
    assert Sign1BitCodec("sign1").estimated_ratio(n) == pytest.approx(1 / 32 + 1 / 4096, rel=1e-4)


def test_bits_on_the_wire_are_msb_first_and_zero_is_positive() -> None:
    x = torch.tensor([1.0, -2.0, 0.0, -0.0, -1.0, 3.0, -1.0, -1.0, 5.0])  # one chunk of 9, 2 bytes of bits
    _, sections = unpack(Sign1BitCodec("sign1", 9).encode(x))
    assert struct.unpack("<I", sections[0]) == (9,)
    assert struct.unpack("<f", sections[1]) == (pytest.approx(14 / 9),)
    assert list(sections[2]) == [0b10110100, 0b10000000]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_decode_to_their_dtype(dtype: torch.dtype) -> None:
    x = torch.randn(3, 2, 11, dtype=torch.float64).to(dtype)
    y = CODEC.decode(CODEC.encode(x))
    assert (y.dtype, y.shape) == (dtype, x.shape)
    assert torch.equal(y, CODEC.decode(CODEC.encode(x.float())).to(dtype))


def test_non_contiguous_input_is_encoded_by_value() -> None:
    x = torch.randn(9, 13).t()
    assert CODEC.encode(x) == CODEC.encode(x.contiguous())
    assert CODEC.encode(x[:, ::3]) == CODEC.encode(x[:, ::3].contiguous())


def test_zero_chunks_decode_to_zero() -> None:
    x = torch.randn(4 * CHUNK + 5)
    x[CHUNK : 3 * CHUNK] = 0.0
    x[4 * CHUNK :] = -0.0
    y = CODEC.decode(CODEC.encode(x))
    assert torch.equal(y[CHUNK : 3 * CHUNK], torch.zeros(2 * CHUNK))
    assert torch.equal(y[4 * CHUNK :], torch.zeros(5))
    assert bool(torch.isfinite(y).all())


@pytest.mark.parametrize("magnitude", [1e30, 1e-30, 3.0e38])
def test_extreme_magnitudes_stay_finite(magnitude: float) -> None:
    x = torch.randn(3 * CHUNK).clamp(-1, 1) * magnitude
    x[:CHUNK] = magnitude  # a chunk whose fp32 sum overflows at the top of the range
    y = CODEC.decode(CODEC.encode(x))
    assert bool(torch.isfinite(y).all())
    assert torch.allclose(y.double(), expected_decode(x, CHUNK), rtol=1e-6, atol=0)
    residual = torch.zeros(3 * CHUNK)
    CODEC.encode_with_feedback(x, residual)
    assert bool(torch.isfinite(residual).all())


def test_non_finite_input_poisons_only_its_chunk() -> None:
    x = torch.randn(3 * CHUNK)
    x[CHUNK + 2] = float("inf")
    x[2 * CHUNK + 1] = float("nan")
    y = CODEC.decode(CODEC.encode(x))
    assert not bool(torch.isfinite(y[CHUNK:]).any())
    assert torch.allclose(y[:CHUNK].double(), expected_decode(x[:CHUNK], CHUNK), rtol=1e-6, atol=0)


MUTATIONS = [f"{name} {how}" for name in ["params", "scales", "bits"] for how in ["short", "long"]]
MUTATIONS += ["chunk 0", f"chunk {blockwise.MAX_BLOCK + 1}", "chunk 4294967295", "chunk 32", "chunk 8"]
MUTATIONS += ["two sections", "four sections"]


def mutated(sections: list[bytes], mutation: str) -> list[bytes]:
    """The sections with one thing broken that the codec itself (not the framing) must catch."""
    what, how = mutation.split()
    if what == "chunk":
        return [struct.pack("<I", int(how)), *sections[1:]]
    if how == "sections":
        return sections[:2] if what == "two" else [*sections, b""]
    i = ["params", "scales", "bits"].index(what)
    return [(s[:-1] if how == "short" else s + b"\0") if j == i else s for j, s in enumerate(sections)]


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_malformed_sections_raise_codec_error(mutation: str) -> None:
    n = 3 * CHUNK + 5
    _, sections = unpack(CODEC.encode(torch.randn(n)))
    # Re-packed with a valid CRC, so the payload gets past the framing to the codec's own checks.
    payload = pack(CodecId.SIGN1, torch.float32, (n,), mutated([bytes(s) for s in sections], mutation))
    with pytest.raises(CodecError):
        CODEC.decode(payload)
    with pytest.raises(CodecError):
        CODEC.decode_accumulate(payload, torch.zeros(n))


def test_absurd_claims_and_codec_mismatch() -> None:
    _, sections = unpack(CODEC.encode(torch.randn(10)))
    huge = pack(CodecId.SIGN1, torch.float32, (1 << 30,), [bytes(s) for s in sections])
    with pytest.raises(CodecError, match="over the limit"):
        CODEC.decode(huge)  # the default bound
    with pytest.raises(CodecError, match="expected"):
        CODEC.decode(huge, max_elements=1 << 31)  # a reckless caller's bound: the section sizes still refuse it
    with pytest.raises(CodecError, match="cannot decode a INT8"):
        CODEC.decode(pack(CodecId.INT8, torch.float32, (10,), [bytes(s) for s in sections]))
    with pytest.raises(CodecError, match="holds 10 elements"):
        CODEC.decode_accumulate(CODEC.encode(torch.randn(10)), torch.zeros(11))


@pytest.mark.parametrize("n", [*SIZES, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("region", [sign_kernels.REGION_ELEMENTS, 20])
def test_fused_feedback_equals_the_generic_one(
    n: int, dtype: torch.dtype, region: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sign_kernels, "REGION_ELEMENTS", region)
    for codec in [CODEC, Sign1BitCodec("s7", 7)]:
        g = torch.randn(n, dtype=torch.float64).to(dtype)
        residual = torch.randn(n)
        residual[:3] = -0.0  # -0.0 >= 0: the fused path must treat it like decode() does
        generic = residual.clone()
        fused_payload = codec.encode_with_feedback(g, residual)
        assert fused_payload == Codec.encode_with_feedback(codec, g, generic)
        assert torch.equal(residual, generic)


def test_feedback_with_other_residual_layouts_falls_back() -> None:
    g = torch.randn(40)
    for residual in [torch.randn(40, dtype=torch.float64), torch.randn(80)[::2]]:
        generic = residual.clone()
        assert CODEC.encode_with_feedback(g, residual) == Codec.encode_with_feedback(CODEC, g, generic)
        assert torch.equal(residual, generic)


def test_error_feedback_tracks_the_running_sum() -> None:
    torch.manual_seed(0)
    n, steps = 4096, 60
    codec = Sign1BitCodec("sign1", 256)
    signal = torch.randn(n)
    residual, sent, total, plain = torch.zeros(n), torch.zeros(n), torch.zeros(n), torch.zeros(n)
    for _ in range(steps):
        g = signal + 3 * torch.randn(n)
        sent += codec.decode(codec.encode_with_feedback(g, residual))
        plain += codec.decode(codec.encode(g))
        total += g
        # The residual holds exactly what has not been sent yet ...
        assert torch.allclose(sent + residual, total, atol=1e-3)
        # ... and stays bounded (sign compression with the mean |x| scale contracts the error).
        assert float(residual.norm()) <= 3 * float(g.norm())
    drift = float((total - sent).norm() / total.norm())
    assert drift < 0.1
    assert drift < 0.2 * float((total - plain).norm() / total.norm())  # without feedback the bias accumulates


@pytest.mark.parametrize("n", [0, 1, 9, 5 * CHUNK + 3])
def test_decode_accumulate_equals_out_plus_alpha_decode(n: int) -> None:
    payload = CODEC.encode(torch.randn(n))
    for out in [torch.randn(n), torch.randn(n, dtype=torch.bfloat16), torch.randn(2 * n)[::2]]:
        expected = out.clone().add_(CODEC.decode(payload).to(out.dtype), alpha=-0.3)
        CODEC.decode_accumulate(payload, out, alpha=-0.3)
        assert torch.equal(out, expected)
    half = CODEC.encode(torch.randn(n).half())  # decode() rounds to fp16; decode_accumulate must too
    out = torch.zeros(n)
    CODEC.decode_accumulate(half, out)
    assert torch.equal(out, CODEC.decode(half).float())


def test_configuration_is_checked() -> None:
    for bad in [0, -1, blockwise.MAX_BLOCK + 1]:
        with pytest.raises(ValueError, match="chunk_size"):
            Sign1BitCodec("sign1", bad)
    assert Sign1BitCodec("x").chunk_size == 4096
    assert Sign1BitCodec.codec_id == CodecId.SIGN1
    assert repr(CODEC) == "Sign1BitCodec('sign1', chunk_size=16)"
    with pytest.raises(CodecError, match="floating"):
        CODEC.encode(torch.arange(5))
