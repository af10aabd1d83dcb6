"""The self-describing, self-validating payload every codec writes.

Layout (little-endian)::

    magic "SWC1" | version u8 | codec id u8 | dtype u8 | ndim u8 | sections u8 | 3 reserved bytes
    | shape: ndim x u64 | section lengths: sections x u64 | crc32 u32 | section bytes...

The CRC covers everything before it and every section byte. ``unpack`` checks the magic, version,
codec id, dtype, rank, element count, that the section lengths add up to the payload exactly,
and the CRC, all before a single tensor is allocated; each codec then checks that its sections
have the exact sizes its parameters imply. So a truncated, bit-flipped or hostile payload costs
a few comparisons and a CRC pass, never a crash or a huge allocation.
"""

from __future__ import annotations

import enum
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from swarmnet.errors import CodecError

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "FORMAT_VERSION",
    "MAGIC",
    "CodecId",
    "Header",
    "dtype_code",
    "pack",
    "unpack",
]

MAGIC = b"SWC1"
FORMAT_VERSION = 1
DEFAULT_MAX_ELEMENTS = 1 << 31  # 8 GiB of fp32: more than any one tensor a peer syncs
MAX_NDIM = 8
MAX_SECTIONS = 8

_FIXED = struct.Struct("<4sBBBBB3x")
_U64 = struct.Struct("<Q")
_CRC = struct.Struct("<I")


class CodecId(enum.IntEnum):
    """Codec families on the wire; values are permanent (a new family takes a new number)."""

    NONE = 0
    FP16 = 1
    BF16 = 2
    INT8 = 3
    INT4 = 4
    SIGN1 = 5
    TOPK = 6


_DTYPES: dict[int, torch.dtype] = {0: torch.float32, 1: torch.float16, 2: torch.bfloat16, 3: torch.float64}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}


def dtype_code(dtype: torch.dtype) -> int:
    """The wire code of a floating dtype; ``CodecError`` for anything else."""
    try:
        return _DTYPE_CODES[dtype]
    except KeyError:
        raise CodecError(f"cannot encode dtype {dtype}; supported: {sorted(map(str, _DTYPE_CODES))}") from None


@dataclass(frozen=True)
class Header:
    """A validated payload header."""

    codec: CodecId
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        """Number of elements of the encoded tensor."""
        return math.prod(self.shape)


def pack(codec: CodecId, dtype: torch.dtype, shape: Sequence[int], sections: Sequence[bytes | memoryview]) -> bytes:
    """Assemble a payload from already-encoded sections."""
    if len(shape) > MAX_NDIM or len(sections) > MAX_SECTIONS:
        raise CodecError(f"at most {MAX_NDIM} dimensions and {MAX_SECTIONS} sections fit the format")
    head = bytearray(_FIXED.pack(MAGIC, FORMAT_VERSION, codec, dtype_code(dtype), len(shape), len(sections)))
    for value in (*shape, *(len(s) for s in sections)):
        head += _U64.pack(value)
    crc = zlib.crc32(head)
    for section in sections:
        crc = zlib.crc32(section, crc)
    return b"".join([bytes(head), _CRC.pack(crc), *sections])


def unpack(
    payload: bytes | bytearray | memoryview, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> tuple[Header, list[memoryview]]:
    """Validate a payload's framing and return its header and sections (views, no copies)."""
    view = memoryview(payload).cast("B")
    if len(view) < _FIXED.size:
        raise CodecError(f"payload of {len(view)} bytes is shorter than the {_FIXED.size}-byte header")
    magic, version, codec_code, dtype_code_, ndim, n_sections = _FIXED.unpack_from(view)
    if magic != MAGIC:
        raise CodecError(f"bad magic {bytes(magic)!r}: not a swarmnet compressed payload")
    if version != FORMAT_VERSION:
        raise CodecError(f"payload format version {version} is not supported (this build reads {FORMAT_VERSION})")
    try:
        codec = CodecId(codec_code)
    except ValueError:
        raise CodecError(f"unknown codec id {codec_code}") from None
    if dtype_code_ not in _DTYPES:
        raise CodecError(f"unknown dtype code {dtype_code_}")
    if ndim > MAX_NDIM or n_sections > MAX_SECTIONS:
        raise CodecError(f"{ndim} dimensions / {n_sections} sections exceed {MAX_NDIM} / {MAX_SECTIONS}")
    header_end = _FIXED.size + 8 * (ndim + n_sections) + _CRC.size
    if len(view) < header_end:
        raise CodecError(f"payload of {len(view)} bytes is truncated inside its {header_end}-byte header")
    numbers = [_U64.unpack_from(view, _FIXED.size + 8 * i)[0] for i in range(ndim + n_sections)]
    shape, lengths = tuple(numbers[:ndim]), numbers[ndim:]
    numel = math.prod(shape)
    if numel > max_elements:
        raise CodecError(f"shape {shape} has {numel} elements, over the limit of {max_elements}")
    if sum(lengths) != len(view) - header_end:
        raise CodecError(f"sections declare {sum(lengths)} bytes but {len(view) - header_end} follow the header")
    (expected_crc,) = _CRC.unpack_from(view, header_end - _CRC.size)
    crc = zlib.crc32(view[header_end:], zlib.crc32(view[: header_end - _CRC.size]))
    if crc != expected_crc:
        raise CodecError(f"CRC32 mismatch ({crc:08x} != {expected_crc:08x}): the payload is corrupt")
    sections, offset = [], header_end
    for length in lengths:
        sections.append(view[offset : offset + length])
        offset += length
    return Header(codec, _DTYPES[dtype_code_], shape), sections
