"""Hostile payloads forged by a foreign client (``forge.py``: struct and zlib, correct CRCs): every decode path
allocates no more than its caller's bound and refuses what the format does not allow, with ``CodecError``."""

from __future__ import annotations

import struct

import pytest
import torch

from swarmnet.compression import codec_names, decode, get_codec
from swarmnet.compression.wire import DEFAULT_MAX_ELEMENTS
from swarmnet.errors import CodecError
from tests.unit.compression.forge import CODEC, DTYPE, TOPK_PARAMS, Fields, forged, seal, split, topk_claim

SCALED = ["int8", "int4", "sign1bit"]


def every_decode_path(name: str, payload: bytes, numel: int) -> list[tuple[str, Exception | None]]:
    """(path, what it raised) for each way a peer reads ``payload`` into ``numel`` elements; a path that raises
    must leave its target as it was."""
    codec = get_codec(name)
    outcomes: list[tuple[str, Exception | None]] = []
    for path in ("decode", "registry", "decode_into", "decode_accumulate", "validate"):
        target = torch.arange(numel, dtype=torch.float32)
        try:
            if path == "decode":
                codec.decode(payload, max_elements=numel)
            elif path == "registry":
                decode(payload, max_elements=numel)
            elif path == "decode_into":
                codec.decode_into(payload, target)
            elif path == "decode_accumulate":
                codec.decode_accumulate(payload, target)
            else:
                codec.validate(payload, numel)
        except Exception as error:  # any type: the caller asserts it is a CodecError
            assert torch.equal(target, torch.arange(numel, dtype=torch.float32)), f"{path} touched its target"
            outcomes.append((path, error))
        else:
            outcomes.append((path, None))
    return outcomes


def assert_refused_everywhere(name: str, payload: bytes, numel: int, match: str) -> None:
    for path, error in every_decode_path(name, payload, numel):
        assert isinstance(error, CodecError), f"{name} {path}: {error!r}"
        assert match in str(error), f"{name} {path}: {error}"


def test_the_default_bound_is_at_most_256_mib_of_fp32() -> None:
    assert DEFAULT_MAX_ELEMENTS <= 1 << 26


@pytest.mark.parametrize("via", ["registry", "codec"])
def test_a_74_byte_topk_payload_cannot_make_decode_allocate_a_gibibyte(via: str) -> None:
    payload = topk_claim(1 << 28)  # one fp16 zero, claimed to sit in 2**28 elements (1 GiB of fp32)
    assert len(payload) == 74
    with pytest.raises(CodecError, match="over the limit"):
        decode(payload) if via == "registry" else get_codec("topk1pct").decode(payload)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_memory_the_machine_does_not_have_is_a_codec_error_not_a_runtime_error(dtype: str) -> None:
    # The caller's bound allows it, but 2**50 elements (2 PiB and more: past any address space, so refused
    # whatever the kernel's overcommit policy) cannot be allocated.
    payload = topk_claim(1 << 50, DTYPE[dtype])
    with pytest.raises(CodecError, match="cannot allocate"):
        decode(payload, max_elements=1 << 51)


def test_a_large_bound_from_the_callers_target_is_not_capped_by_the_default() -> None:
    # A peer checking a payload for a 2**27-element target (meta: nothing allocated) must accept it.
    get_codec("topk1pct").validate(topk_claim(1 << 27), 1 << 27)


def test_a_negative_bound_is_a_local_mistake() -> None:
    with pytest.raises(ValueError, match="max_elements"):
        decode(get_codec("none").encode(torch.ones(3)), max_elements=-1)


@pytest.mark.parametrize("name", codec_names())
@pytest.mark.parametrize("position", [0, 1, 2])
def test_nonzero_reserved_header_bytes_are_refused(name: str, position: int) -> None:
    payload = get_codec(name).encode(torch.randn(3, 50, generator=torch.Generator().manual_seed(1)))
    reserved = bytearray(3)
    reserved[position] = 0x80
    assert_refused_everywhere(name, forged(payload, reserved=bytes(reserved)), 150, "reserved")


@pytest.mark.parametrize("name", [n for n in codec_names() if n.startswith("topk")])
def test_nonzero_reserved_topk_param_bytes_are_refused(name: str) -> None:
    payload = get_codec(name).encode(torch.randn(1000, generator=torch.Generator().manual_seed(2)))
    sections = split(payload).sections
    count, first, scale, width, fmt, _ = TOPK_PARAMS.unpack(sections[0])
    params = TOPK_PARAMS.pack(count, first, scale, width, fmt, b"\0\x01")
    assert_refused_everywhere(name, forged(payload, sections=(params, *sections[1:])), 1000, "reserved")


@pytest.mark.parametrize("name", ["sign1bit", "int4"])
@pytest.mark.parametrize("shape", [(32,), (4, 8)])
def test_a_payload_reframed_to_one_element_less_with_the_same_byte_count_is_refused(
    name: str, shape: tuple[int, ...]
) -> None:
    # 32 elements and 31 take the same number of sign bytes (4) and int4 bytes (16); the last element is
    # nonzero and positive, so its bit (sign1bit) or nibble (int4) is not the padding a 31-element payload has.
    x = torch.randn(32, generator=torch.Generator().manual_seed(3))
    x[-1] = 1.0
    payload = get_codec(name).encode(x.reshape(shape))
    assert_refused_everywhere(name, forged(payload, shape=(31,)), 31, "padding")


@pytest.mark.parametrize("name", SCALED)
def test_a_negative_block_scale_is_refused(name: str) -> None:
    # Scales are absmax / qmax or mean |x|: never negative. A negative one would flip every sign of its block.
    payload = get_codec(name).encode(torch.randn(5000, generator=torch.Generator().manual_seed(4)))
    params, scales, values = split(payload).sections
    (first_scale,) = struct.unpack_from("<f", scales)
    negative = struct.pack("<f", -first_scale) + scales[4:]
    assert_refused_everywhere(name, forged(payload, sections=(params, negative, values)), 5000, "negative")


@pytest.mark.parametrize("name", codec_names())
def test_a_target_of_another_layout_is_refused_and_a_flat_one_is_not(name: str) -> None:
    codec = get_codec(name)
    payload = codec.encode(torch.randn(4, 8, generator=torch.Generator().manual_seed(5)))
    for method in (codec.decode_into, codec.decode_accumulate):
        transposed = torch.zeros(8, 4)
        with pytest.raises(CodecError, match="shape"):
            method(payload, transposed)
        assert not transposed.any()
    flat = torch.full((32,), float("nan"))  # flat memory takes any layout of the same size
    codec.decode_into(payload, flat)
    assert torch.equal(flat, codec.decode(payload).reshape(-1))


@pytest.mark.parametrize("name", codec_names())
def test_decode_refuses_a_payload_unlike_the_shape_and_dtype_the_caller_expects(name: str) -> None:
    codec = get_codec(name)
    payload = codec.encode(torch.randn(4, 8, generator=torch.Generator().manual_seed(6)))
    assert codec.decode(payload, shape=(4, 8), dtype=torch.float32).shape == (4, 8)
    assert decode(payload, shape=(4, 8), dtype=torch.float32).dtype == torch.float32
    for wrong in ((8, 4), (32,), (4, 9)):
        with pytest.raises(CodecError, match="shape"):
            codec.decode(payload, shape=wrong)
        with pytest.raises(CodecError, match="shape"):
            decode(payload, shape=wrong)
    with pytest.raises(CodecError, match="dtype"):
        decode(payload, dtype=torch.float16)


@pytest.mark.parametrize("name", ["none", "fp16", "bf16"])
def test_fp16_data_relabelled_as_bf16_is_refused_by_a_caller_that_expects_fp16(name: str) -> None:
    payload = get_codec(name).encode(torch.randn(64, generator=torch.Generator().manual_seed(7)).half())
    relabelled = forged(payload, dtype=DTYPE["bfloat16"])
    assert decode(relabelled).dtype == torch.bfloat16  # what the payload claims, if nobody says otherwise
    with pytest.raises(CodecError, match="dtype"):
        decode(relabelled, dtype=torch.float16)
    with pytest.raises(CodecError, match="dtype"):
        get_codec(name).decode(relabelled, dtype=torch.float16)


@pytest.mark.parametrize(
    "fields",
    [
        Fields(CODEC["none"], DTYPE["float32"], (0, 2**64 - 1), (b"",)),
        Fields(CODEC["fp16"], DTYPE["float32"], (2**63, 0), (b"",)),
        Fields(CODEC["int8"], DTYPE["float32"], (0, 2**63), (struct.pack("<I", 4096), b"", b"")),
        Fields(
            CODEC["topk"], DTYPE["float32"], (2**64 - 1, 0), (TOPK_PARAMS.pack(0, 0, 0.0, 1, 0, b"\0\0"), b"", b"")
        ),
    ],
    ids=["none", "fp16", "int8", "topk"],
)
def test_an_empty_shape_with_a_dimension_past_int64_is_refused(fields: Fields) -> None:
    with pytest.raises(CodecError, match="dimension"):
        decode(seal(fields))
