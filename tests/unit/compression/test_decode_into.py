"""``decode_into`` and ``decode_accumulate`` agree with ``decode`` for every registered codec."""

from __future__ import annotations

import pytest
import torch

from swarmnet.compression import codec_names, get_codec
from swarmnet.compression.wire import pack, unpack
from swarmnet.errors import CodecError

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.mark.parametrize("name", codec_names())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_decode_into_writes_exactly_the_decoded_values(name: str, dtype: torch.dtype) -> None:
    codec = get_codec(name)
    payload = codec.encode((torch.randn(5003, generator=torch.Generator().manual_seed(3)) * 7).to(dtype))
    expected = codec.decode(payload).float()
    out = torch.full((5003,), float("nan"))  # every element must be overwritten
    codec.decode_into(payload, out)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", codec_names())
def test_decode_accumulate_equals_adding_the_decoded_values(name: str) -> None:
    codec = get_codec(name)
    x = torch.randn(4099, generator=torch.Generator().manual_seed(5))
    for payload in (codec.encode(x), codec.encode(x.half())):
        base = torch.randn(4099)
        out = base.clone()
        codec.decode_accumulate(payload, out, alpha=-0.3)
        torch.testing.assert_close(out, base + -0.3 * codec.decode(payload).float(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", codec_names())
def test_decode_into_refuses_a_wrong_size_or_foreign_payload_and_leaves_out_alone(name: str) -> None:
    codec = get_codec(name)
    other = get_codec("int8" if name != "int8" else "fp16")
    out = torch.arange(100, dtype=torch.float32)
    for payload in (codec.encode(torch.randn(99)), other.encode(torch.randn(100))):
        with pytest.raises(CodecError):
            codec.decode_into(payload, out)
        assert torch.equal(out, torch.arange(100, dtype=torch.float32))


@pytest.mark.parametrize("name", codec_names())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_validate_accepts_what_decodes_finite_and_decode_into_fills_zeros(name: str, dtype: torch.dtype) -> None:
    codec = get_codec(name)
    payload = codec.encode((torch.randn(3001, generator=torch.Generator().manual_seed(4)) * 3).to(dtype))
    codec.validate(payload, 3001)
    with pytest.raises(CodecError):
        codec.validate(payload, 3000)
    out = torch.randn(3001)  # stale values: a sparse codec must zero what it did not send
    codec.decode_into(payload, out, require_finite=True)
    torch.testing.assert_close(out, codec.decode(payload).float(), rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in codec_names() if n.startswith("topk")])
def test_sparse_values_that_overflow_the_payload_dtype_are_refused_as_non_finite(name: str) -> None:
    # Values past fp16's range in an fp16-typed payload: int8 and sign values are scaled in fp32 and
    # only become inf when decode() rounds them to the payload's dtype, which validate must see too.
    codec = get_codec(name)
    huge = codec.encode(torch.full((2000,), 1e30))  # fp32 header: finite
    codec.validate(huge, 2000)
    header, sections = unpack(huge)
    as_half = pack(header.codec, torch.float16, header.shape, [bytes(s) for s in sections])
    if getattr(codec, "values", None) == "fp16":  # fp16 values saturate at encode: nothing overflows
        codec.validate(as_half, 2000)
        return
    with pytest.raises(CodecError, match="finite"):
        codec.validate(as_half, 2000)
    out = torch.arange(2000, dtype=torch.float32)
    with pytest.raises(CodecError, match="finite"):
        codec.decode_into(as_half, out, require_finite=True)
    assert torch.equal(out, torch.arange(2000, dtype=torch.float32))
