"""none, fp16 and bf16: exact sizes, documented error bounds, dtypes restored."""

from __future__ import annotations

import pytest
import torch

from swarmnet.compression.cast import BFloat16Codec, Float16Codec, NoneCodec
from swarmnet.compression.wire import CodecId
from swarmnet.errors import CodecError

HEADER_1D = 12 + 8 * 2 + 4  # fixed part, one dimension, one section, CRC


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (2, 3, 4)])
def test_none_is_lossless_and_restores_dtype_and_shape(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    y = NoneCodec("none").decode(NoneCodec("none").encode(x))
    assert y.dtype == dtype
    assert y.shape == x.shape
    assert torch.equal(y, x)


@pytest.mark.parametrize(("codec", "bound"), [(Float16Codec("fp16"), 2**-11), (BFloat16Codec("bf16"), 2**-8)])
def test_half_precision_error_within_rounding_bound(codec: NoneCodec, bound: float) -> None:
    x = torch.randn(10_000) * torch.logspace(-3, 3, 10_000)
    payload = codec.encode(x)
    assert len(payload) == HEADER_1D + 2 * x.numel()
    assert codec.estimated_ratio(x.numel()) == 0.5
    y = codec.decode(payload)
    assert y.dtype == torch.float32
    # Round to nearest: relative error <= bound for normal numbers; fp16 subnormals (below 2**-14)
    # are spaced 2**-24 apart, so there the error is at most half of that.
    assert bool(((y - x).abs() <= torch.clamp(x.abs() * bound, min=2**-25)).all())


def test_fp16_saturates_instead_of_sending_infinity() -> None:
    x = torch.tensor([1e6, -1e6, 3.0])
    y = Float16Codec("fp16").decode(Float16Codec("fp16").encode(x))
    assert y.tolist() == [65504.0, -65504.0, 3.0]


def test_non_contiguous_input_is_encoded_by_value() -> None:
    x = torch.randn(6, 8).t()
    assert torch.equal(NoneCodec("none").decode(NoneCodec("none").encode(x)), x)


def test_refuses_integer_tensors() -> None:
    with pytest.raises(CodecError, match="floating"):
        NoneCodec("none").encode(torch.arange(3))


def test_decode_accumulate_and_feedback_defaults() -> None:
    codec = BFloat16Codec("bf16")
    x, out = torch.randn(100), torch.ones(100)
    codec.decode_accumulate(codec.encode(x), out, alpha=0.5)
    assert torch.allclose(out, 1 + 0.5 * codec.decode(codec.encode(x)))
    residual = torch.zeros(100)
    payload = codec.encode_with_feedback(x, residual)
    assert torch.allclose(codec.decode(payload) + residual, x)
    assert codec.codec_id == CodecId.BF16
    with pytest.raises(CodecError, match="holds 100 elements"):
        codec.decode_accumulate(codec.encode(x), torch.zeros(200))
