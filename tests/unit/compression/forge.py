"""Payloads forged the way a foreign client would: ``struct`` and ``zlib`` only, no swarmnet code.

The layout is the one ``swarmnet.compression.wire`` documents (little-endian)::

    magic "SWC1" | version u8 | codec id u8 | dtype u8 | ndim u8 | sections u8 | 3 reserved bytes
    | shape: ndim x u64 | section lengths: sections x u64 | crc32 u32 | section bytes...

Every forged payload carries a correct CRC, so only the decoder's own checks stand between it and a tensor.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

FIXED = struct.Struct("<4sBBBBB3s")
U64 = struct.Struct("<Q")
CRC = struct.Struct("<I")

# Wire numbers, as documented (copied, not imported: an outsider only has the documentation).
CODEC = {"none": 0, "fp16": 1, "bf16": 2, "int8": 3, "int4": 4, "sign1bit": 5, "topk": 6}
DTYPE = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}
TOPK_PARAMS = struct.Struct("<QQfBB2s")  # count, first index, scale, index bit width, value format, reserved


@dataclass(frozen=True)
class Fields:
    """Every field of a payload, editable one at a time."""

    codec: int
    dtype: int
    shape: tuple[int, ...]
    sections: tuple[bytes, ...]
    version: int = 1
    reserved: bytes = b"\0\0\0"
    magic: bytes = b"SWC1"


def seal(fields: Fields) -> bytes:
    """The payload with these fields and a correct CRC (section lengths follow the sections)."""
    head = FIXED.pack(
        fields.magic,
        fields.version,
        fields.codec,
        fields.dtype,
        len(fields.shape),
        len(fields.sections),
        fields.reserved,
    )
    head += b"".join(U64.pack(v) for v in (*fields.shape, *(len(s) for s in fields.sections)))
    body = b"".join(fields.sections)
    return head + CRC.pack(zlib.crc32(body, zlib.crc32(head))) + body


def split(payload: bytes) -> Fields:
    """The fields of a well-formed payload (the inverse of ``seal``)."""
    magic, version, codec, dtype, ndim, n_sections, reserved = FIXED.unpack_from(payload)
    numbers = [U64.unpack_from(payload, FIXED.size + 8 * i)[0] for i in range(ndim + n_sections)]
    offset = FIXED.size + 8 * (ndim + n_sections) + CRC.size
    sections = []
    for length in numbers[ndim:]:
        sections.append(payload[offset : offset + length])
        offset += length
    return Fields(codec, dtype, tuple(numbers[:ndim]), tuple(sections), version, reserved, magic)


def forged(payload: bytes, **changes: object) -> bytes:
    """``payload`` with some fields replaced (``shape=``, ``dtype=``, ``sections=``...) and the CRC redone."""
    return seal(replace(split(payload), **changes))  # type: ignore[arg-type]


def topk_claim(numel: int, dtype: int = DTYPE["float32"]) -> bytes:
    """A top-k payload of one fp16 zero at index 0 of a tensor it claims has ``numel`` elements (74 bytes)."""
    params = TOPK_PARAMS.pack(1, 0, 0.0, 1, 0, b"\0\0")
    return seal(Fields(CODEC["topk"], dtype, (numel,), (params, b"", b"\0\0")))
