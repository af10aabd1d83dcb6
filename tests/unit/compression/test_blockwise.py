"""int8 and int4: exact payload sizes, the absmax error bound, dtypes and shapes restored, hostile payloads."""

from __future__ import annotations

import math
import struct

import pytest
import torch

from swarmnet.compression import blockwise
from swarmnet.compression.base import Codec
from swarmnet.compression.blockwise import BlockwiseCodec
from swarmnet.compression.int4 import Int4Codec
from swarmnet.compression.int8 import Int8Codec
from swarmnet.compression.wire import CodecId, pack, unpack
from swarmnet.errors import CodecError
from swarmnet.kernels import blockwise as blockwise_kernels

BLOCK = 16  # small blocks keep the awkward sizes cheap; the defaults get their own tests
CODECS = [Int8Codec("int8", BLOCK), Int4Codec("int4", BLOCK)]
IDS = ["int8", "int4"]
SIZES = [0, 1, 2, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5]


def header_len(ndim: int) -> int:
    return 12 + 8 * (ndim + 3) + 4  # fixed part, dimensions, three section lengths, CRC


def payload_len(codec: BlockwiseCodec, shape: tuple[int, ...]) -> int:
    numel = math.prod(shape)
    values = numel if isinstance(codec, Int8Codec) else (numel + 1) // 2
    return header_len(len(shape)) + 4 + 4 * math.ceil(numel / codec.block_size) + values


def step_bound(x: torch.Tensor, block: int, qmax: int) -> torch.Tensor:
    """Half a quantization step per element: its block's absmax / (2 qmax), in fp64."""
    flat = x.reshape(-1).double()
    n_blocks = -(-flat.numel() // block)
    padded = torch.nn.functional.pad(flat, (0, n_blocks * block - flat.numel()))
    absmax = padded.view(n_blocks, block).abs().amax(1)
    return (absmax / (2 * qmax)).repeat_interleave(block)[: flat.numel()].view(x.shape)


def assert_within_half_step(codec: BlockwiseCodec, x: torch.Tensor, y: torch.Tensor) -> None:
    # The bound is exact math; fp32 rounding of x / scale and q * scale adds a few parts in 10**7 of absmax.
    bound = step_bound(x, codec.block_size, codec.qmax) * (1 + 1e-5)
    err = (x.double() - y.double()).abs()
    assert bool((err <= bound).all()), f"max excess {float((err - bound).max())}"


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("n", SIZES)
def test_round_trip_awkward_sizes_within_half_step(codec: BlockwiseCodec, n: int) -> None:
    x = torch.randn(n) * torch.rand(n).pow(4) * 10
    payload = codec.encode(x)
    assert len(payload) == payload_len(codec, (n,))
    y = codec.decode(payload)
    assert (y.dtype, y.shape) == (torch.float32, x.shape)
    assert_within_half_step(codec, x, y)
    if n:
        assert codec.estimated_ratio(n) == (len(payload) - header_len(1)) / (4 * n)


@pytest.mark.parametrize("codec", [Int8Codec("int8"), Int4Codec("int4")], ids=IDS)
@pytest.mark.parametrize("shape", [(4095,), (3, 700, 5), (2, 4097), ()])
def test_default_block_sizes_and_shapes(codec: BlockwiseCodec, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    payload = codec.encode(x)
    assert len(payload) == payload_len(codec, shape)
    y = codec.decode(payload)
    assert y.shape == x.shape
    assert_within_half_step(codec, x, y)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_decode_to_their_dtype(codec: BlockwiseCodec, dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 11, dtype=torch.float64).to(dtype)
    y = codec.decode(codec.encode(x))
    assert (y.dtype, y.shape) == (dtype, x.shape)
    # Same fp32 arithmetic as for the fp32 copy, rounded to the dtype at the end.
    assert torch.equal(y, codec.decode(codec.encode(x.float())).to(dtype))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_non_contiguous_input_is_encoded_by_value(codec: BlockwiseCodec) -> None:
    x = torch.randn(9, 13).t()
    assert codec.encode(x) == codec.encode(x.contiguous())
    assert codec.encode(x[::2]) == codec.encode(x[::2].contiguous())


@pytest.mark.parametrize("codec", [*CODECS, Int8Codec("int8", 7), Int4Codec("int4", 7)], ids=[*IDS, "i8-7", "i4-7"])
@pytest.mark.parametrize("n", [0, 1, 40, 41, 7 * 13 + 3])
def test_region_size_does_not_change_the_payload(
    codec: BlockwiseCodec, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = torch.randn(n, dtype=torch.float64)  # fp64 also takes the conversion path
    expected, single = codec.encode(x), codec.encode(x.float())
    decoded, decoded64 = codec.decode(single), codec.decode(expected)
    out = torch.randn(n)
    accumulated = out + 0.25 * decoded
    monkeypatch.setattr(blockwise_kernels, "REGION_ELEMENTS", 20)  # many regions; odd blocks end mid-byte for int4
    assert codec.encode(x) == expected
    assert torch.equal(codec.decode(single), decoded)
    assert torch.equal(codec.decode(expected), decoded64)
    codec.decode_accumulate(single, out, alpha=0.25)
    assert torch.equal(out, accumulated)


def test_int8_values_and_scales_on_the_wire() -> None:
    x = torch.tensor([127.0, -63.4, 0.5, -1.6, 0.0, 0.0, 0.0, 0.0, 2.0])
    _, sections = unpack(Int8Codec("int8", 4).encode(x))
    assert struct.unpack("<I", sections[0]) == (4,)
    assert struct.unpack("<3f", sections[1]) == (1.0, 0.0, pytest.approx(2 / 127))
    assert list(struct.unpack("<9b", sections[2])) == [127, -63, 0, -2, 0, 0, 0, 0, 127]


def test_int4_nibble_layout_on_the_wire() -> None:
    # scale 1: q = x; nibble q + 8; element 2i low, 2i+1 high; an odd count pads the last high nibble with 8.
    _, sections = unpack(Int4Codec("int4", 4).encode(torch.tensor([7.0, -7.0, 0.0, 3.0, 7.0, -7.0, 1.0])))
    assert list(sections[2]) == [15 | 1 << 4, 8 | 11 << 4, 15 | 1 << 4, 9 | 8 << 4]
    assert list(struct.unpack("<2f", sections[1])) == [1.0, 1.0]


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_zero_blocks_decode_to_zero(codec: BlockwiseCodec) -> None:
    x = torch.randn(5 * BLOCK + 3)
    x[BLOCK : 3 * BLOCK] = 0.0
    x[3 * BLOCK : 4 * BLOCK] = -0.0
    x[5 * BLOCK :] = 0.0  # the partial block
    y = codec.decode(codec.encode(x))
    assert torch.equal(y[BLOCK : 4 * BLOCK], torch.zeros(3 * BLOCK))
    assert torch.equal(y[5 * BLOCK :], torch.zeros(3))
    assert_within_half_step(codec, x, y)
    assert torch.equal(codec.decode(codec.encode(torch.zeros(100))), torch.zeros(100))
    # Zero blocks get the scale +0.0 on the wire (once -0.0, from the sign of -absmax / qmax).
    _, sections = unpack(codec.encode(x))
    scales = struct.unpack(f"<{len(sections[1]) // 4}f", sections[1])
    assert [math.copysign(1.0, s) for s in scales[1:4] + scales[5:]] == [1.0] * 4


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("magnitude", [1e30, 1e-30, 3.0e38])
def test_extreme_magnitudes_stay_finite_and_bounded(codec: BlockwiseCodec, magnitude: float) -> None:
    x = torch.randn(3 * BLOCK).clamp(-1, 1) * magnitude
    x[0] = magnitude  # a block right at the top of the range
    x[BLOCK : 2 * BLOCK] *= 1e-3
    y = codec.decode(codec.encode(x))
    assert bool(torch.isfinite(y).all())
    assert_within_half_step(codec, x, y)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_fp64_beyond_fp32_range_saturates(codec: BlockwiseCodec) -> None:
    y = codec.decode(codec.encode(torch.tensor([1e300, -1e300, 1.0], dtype=torch.float64)))
    assert bool(torch.isfinite(y).all())
    assert y[0] == pytest.approx(3.4e38, rel=1e-2)
    assert y[1] == pytest.approx(-3.4e38, rel=1e-2)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_non_finite_input_poisons_only_its_block(codec: BlockwiseCodec) -> None:
    x = torch.randn(3 * BLOCK)
    x[BLOCK + 2] = float("inf")
    x[2 * BLOCK + 1] = float("nan")
    y = codec.decode(codec.encode(x))
    assert not bool(torch.isfinite(y[BLOCK:]).any())
    assert_within_half_step(codec, x[:BLOCK], y[:BLOCK])


MUTATIONS = [f"{name} {how}" for name in ["params", "scales", "values"] for how in ["short", "long"]]
MUTATIONS += ["block 0", f"block {blockwise.MAX_BLOCK + 1}", "block 4294967295", "block 32", "block 8"]
MUTATIONS += ["two sections", "four sections"]


def mutated(sections: list[bytes], mutation: str) -> list[bytes]:
    """The sections with one thing broken that the codec itself (not the framing) must catch."""
    what, how = mutation.split()
    if what == "block":
        return [struct.pack("<I", int(how)), *sections[1:]]
    if how == "sections":
        return sections[:2] if what == "two" else [*sections, b""]
    i = ["params", "scales", "values"].index(what)
    return [(s[:-1] if how == "short" else s + b"\0") if j == i else s for j, s in enumerate(sections)]


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_malformed_sections_raise_codec_error(codec: BlockwiseCodec, mutation: str) -> None:
    n = 3 * BLOCK + 5
    _, sections = unpack(codec.encode(torch.randn(n)))
    # Re-packed with a valid CRC, so the payload gets past the framing to the codec's own checks.
    payload = pack(codec.codec_id, torch.float32, (n,), mutated([bytes(s) for s in sections], mutation))
    with pytest.raises(CodecError):
        codec.decode(payload)
    with pytest.raises(CodecError):
        codec.decode_accumulate(payload, torch.zeros(n))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_absurd_claims_are_refused_before_allocating(codec: BlockwiseCodec) -> None:
    _, sections = unpack(codec.encode(torch.randn(10)))
    huge = pack(codec.codec_id, torch.float32, (1 << 30,), [bytes(s) for s in sections])
    with pytest.raises(CodecError, match="over the limit"):
        codec.decode(huge)  # the default bound
    with pytest.raises(CodecError, match="expected"):
        codec.decode(huge, max_elements=1 << 31)  # a reckless caller's bound: the section sizes still refuse it
    big_block = pack(codec.codec_id, torch.float32, (10,), [struct.pack("<I", 1 << 30), *map(bytes, sections[1:])])
    with pytest.raises(CodecError, match="block size"):
        codec.decode(big_block)


def test_header_and_codec_mismatch() -> None:
    int8, int4 = CODECS
    with pytest.raises(CodecError, match="cannot decode a INT4"):
        int8.decode(int4.encode(torch.randn(10)))
    with pytest.raises(CodecError, match="cannot decode a INT8"):
        int4.decode_accumulate(int8.encode(torch.randn(10)), torch.zeros(10))
    # int8 sections under an INT4 header: the sizes no longer fit.
    _, sections = unpack(int8.encode(torch.randn(10)))
    with pytest.raises(CodecError, match="sections"):
        int4.decode(pack(CodecId.INT4, torch.float32, (10,), [bytes(s) for s in sections]))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_decode_accumulate_equals_out_plus_alpha_decode(codec: BlockwiseCodec) -> None:
    x = torch.randn(4, 25)
    payload = codec.encode(x)
    for out in [torch.randn(4, 25), torch.randn(100), torch.randn(25, 4).t(), torch.randn(100, dtype=torch.bfloat16)]:
        expected = out.clone().add_(codec.decode(payload).reshape(out.shape).to(out.dtype), alpha=-0.7)
        codec.decode_accumulate(payload, out, alpha=-0.7)
        assert torch.equal(out, expected)
    half = codec.encode(x.half())  # decode() rounds to fp16; decode_accumulate must too
    out = torch.zeros(100)
    codec.decode_accumulate(half, out)
    assert torch.equal(out, codec.decode(half).float().reshape(-1))
    with pytest.raises(CodecError, match="holds 100 elements"):
        codec.decode_accumulate(payload, torch.zeros(101))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_error_feedback_keeps_the_running_sum(codec: BlockwiseCodec) -> None:
    residual, sent, total = torch.zeros(200), torch.zeros(200), torch.zeros(200)
    for step in range(30):
        g = torch.randn(200) * (1 + step % 3) + 0.1
        sent += codec.decode(codec.encode_with_feedback(g, residual))
        total += g
        assert torch.allclose(sent + residual, total, atol=1e-4)
        assert float(residual.abs().max()) <= float(g.abs().max())


def test_configuration_is_checked() -> None:
    for bad in [0, -1, blockwise.MAX_BLOCK + 1]:
        with pytest.raises(ValueError, match="block_size"):
            Int8Codec("int8", bad)
        with pytest.raises(ValueError, match="block_size"):
            Int4Codec("int4", bad)
    assert Int8Codec("x").block_size == 4096
    assert Int4Codec("x").block_size == 1024
    assert (Int8Codec.codec_id, Int4Codec.codec_id) == (CodecId.INT8, CodecId.INT4)
    assert repr(Int4Codec("int4")) == "Int4Codec('int4', block_size=1024)"
    assert isinstance(Int8Codec("x"), Codec)
    with pytest.raises(CodecError, match="floating"):
        Int8Codec("x").encode(torch.arange(5))
