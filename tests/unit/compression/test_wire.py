"""The payload framing: every malformed payload is a CodecError, checked before allocation."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmnet.compression.cast import Float16Codec, NoneCodec
from swarmnet.compression.wire import FORMAT_VERSION, MAGIC, CodecId, pack, unpack
from swarmnet.errors import CodecError

FP16 = Float16Codec("fp16")
NONE = NoneCodec("none")


def header_len(ndim: int, sections: int) -> int:
    return 12 + 8 * (ndim + sections) + 4


def test_pack_unpack_round_trip_keeps_header_and_sections() -> None:
    payload = pack(CodecId.FP16, torch.bfloat16, (3, 4, 5), [b"abc", b"", b"defg"])
    header, sections = unpack(payload)
    assert (header.codec, header.dtype, header.shape, header.numel) == (CodecId.FP16, torch.bfloat16, (3, 4, 5), 60)
    assert [bytes(s) for s in sections] == [b"abc", b"", b"defg"]
    assert len(payload) == header_len(3, 3) + 7


def test_scalar_and_empty_shapes() -> None:
    assert unpack(pack(CodecId.NONE, torch.float32, (), [b"\0" * 4]))[0].numel == 1
    assert unpack(pack(CodecId.NONE, torch.float32, (0, 7), [b""]))[0].numel == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[:5], "shorter than"),
        (lambda p: b"XXXX" + p[4:], "bad magic"),
        (lambda p: p[:4] + bytes([FORMAT_VERSION + 1]) + p[5:], "format version"),
        (lambda p: p[:5] + bytes([200]) + p[6:], "unknown codec id 200"),
        (lambda p: p[:6] + bytes([77]) + p[7:], "unknown dtype"),
        (lambda p: p[:7] + bytes([9]) + p[8:], "dimensions"),
        (lambda p: p[:20], "truncated inside"),
        (lambda p: p[:-1], "sections declare"),
        (lambda p: p + b"\0", "sections declare"),
    ],
)
def test_framing_errors_are_named(mutate, message: str) -> None:
    payload = FP16.encode(torch.randn(10))
    with pytest.raises(CodecError, match=message):
        unpack(mutate(payload))


def test_absurd_shape_is_refused_before_any_allocation() -> None:
    # 10^12 elements claimed with a valid CRC and a tiny body: the limit check must fire first.
    payload = pack(CodecId.TOPK, torch.float32, (10**6, 10**6), [b"\0" * 16])
    with pytest.raises(CodecError, match="over the limit"):
        unpack(payload)
    with pytest.raises(CodecError, match="over the limit"):
        unpack(pack(CodecId.NONE, torch.float32, (2**63, 2**63), []))


def test_crc_catches_a_flipped_bit_in_the_values() -> None:
    payload = bytearray(FP16.encode(torch.randn(100)))
    payload[-3] ^= 0x10
    with pytest.raises(CodecError, match="CRC32 mismatch"):
        unpack(bytes(payload))


def test_codec_checks_section_sizes_even_with_a_valid_crc() -> None:
    payload = pack(CodecId.FP16, torch.float32, (10,), [b"\0" * 19])  # 10 fp16 values need 20 bytes
    with pytest.raises(CodecError, match="expected \\[20\\]"):
        FP16.decode(payload)
    with pytest.raises(CodecError, match="cannot decode a FP16 payload"):
        NONE.decode(FP16.encode(torch.randn(3)))


def test_mutation_loop_over_real_payloads_only_raises_codec_error() -> None:
    rng = random.Random(0)
    for payload in (FP16.encode(torch.randn(64, 3)), NONE.encode(torch.randn(17)), NONE.encode(torch.randn(0))):
        for _ in range(400):
            mutant = bytearray(payload)
            choice = rng.randrange(3)
            if choice == 0:
                position = rng.randrange(len(mutant))
                mutant[position] ^= 1 << rng.randrange(8)
            elif choice == 1:
                del mutant[rng.randrange(len(mutant)) :]
            else:
                mutant += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
            with pytest.raises(CodecError):
                FP16.decode(bytes(mutant)) if payload[5] == CodecId.FP16 else NONE.decode(bytes(mutant))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        FP16.decode(data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.lists(st.integers(0, 2**64 - 1), max_size=4),
    st.lists(st.integers(0, 64), max_size=3),
)
def test_hostile_headers_with_valid_crc_only_raise_codec_error(
    codec: int, dtype: int, shape: list[int], lengths: list[int]
) -> None:
    head = struct.pack("<4sBBBBB3x", MAGIC, FORMAT_VERSION, codec, dtype, len(shape), len(lengths))
    head += b"".join(struct.pack("<Q", v) for v in (*shape, *lengths))
    body = bytes(sum(lengths[:-1])) if lengths else b""  # one section short, or exact when empty
    crc = zlib.crc32(body, zlib.crc32(head))
    payload = head + struct.pack("<I", crc) + body
    try:
        header, _ = unpack(payload, max_elements=1 << 20)
    except CodecError:
        return
    # Framing accepted it: then the only family that may decode it must either succeed at a
    # size that matches, or refuse with CodecError.
    from swarmnet.compression.registry import decode

    try:
        decoded = decode(payload, max_elements=1 << 20)
    except CodecError:
        return
    assert decoded.numel() == header.numel
