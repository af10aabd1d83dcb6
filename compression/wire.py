"""The self-describing, self-validating payload every codec writes.

Layout (little-endian)::

    magic "SWC1" | version u8 | codec id u8 | dtype u8 | ndim u8 | sections u8 | 3 reserved bytes
    | shape: ndim x u64 | section lengths: sections x u64 | crc32 u32 | section bytes...

The CRC covers everything before it and every section byte. ``unpack`` checks the magic, version,
codec id, dtype, rank, that the reserved bytes are zero, that every dimension fits a torch size,
the element count against the caller's bound, that the section lengths add up to the payload
exactly, and the CRC, all before a single tensor is allocated; each codec then checks that its
sections have the exact sizes its parameters imply. So a truncated, bit-flipped or hostile payload
costs a few comparisons and a CRC pass, never a crash or an allocation past the bound.

**The bound.** Every decode takes ``max_elements``, the most elements the caller's context allows
(a target buffer's size, an adapter's length). Without one, ``unpack`` allows
``DEFAULT_MAX_ELEMENTS`` (2**26: 256 MiB of fp32, 512 MiB of fp64), or the element count of the
``shape`` the caller expects. A decode allocates at most the payload's element count in its dtype
(plus, for the quantized codecs, one fp32 working copy of the same count), so the bound caps its
memory; an allocation the machine cannot make anyway is a ``CodecError`` too.
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
DEFAULT_MAX_ELEMENTS = 1 << 26  # 256 MiB of fp32; callers decoding larger tensors pass their own bound
MAX_NDIM = 8
MAX_SECTIONS = 8
_MAX_EXTENT = (1 << 63) - 1  # torch sizes and strides are int64

_FIXED = struct.Struct("<4sBBBBB3s")
_RESERVED = b"\0\0\0"
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
    head = bytearray(
        _FIXED.pack(MAGIC, FORMAT_VERSION, codec, dtype_code(dtype), len(shape), len(sections), _RESERVED)
    )
    for value in (*shape, *(len(s) for s in sections)):
        head += _U64.pack(value)
    crc = zlib.crc32(head)
    for section in sections:
        crc = zlib.crc32(section, crc)
    return b"".join([bytes(head), _CRC.pack(crc), *sections])


def unpack(
    payload: bytes | bytearray | memoryview,
    max_elements: int | None = None,
    *,
    shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Header, list[memoryview]]:
    """Validate a payload's framing and return its header and sections (views, no copies).

    ``max_elements``: the most elements the caller accepts (default: the element count of ``shape`` if
    given, else ``DEFAULT_MAX_ELEMENTS``). ``shape`` and ``dtype``: what the caller expects the payload to
    hold, exactly; anything else is a ``CodecError``. A negative bound is the caller's mistake (``ValueError``).
    """
    limit = _limit(max_elements, shape)
    view = memoryview(payload).cast("B")
    if len(view) < _FIXED.size:
        raise CodecError(f"payload of {len(view)} bytes is shorter than the {_FIXED.size}-byte header")
    magic, version, codec_code, dtype_code_, ndim, n_sections, reserved = _FIXED.unpack_from(view)
    if magic != MAGIC:
        raise CodecError(f"bad magic {bytes(magic)!r}: not a swarmnet compressed payload")
    if version != FORMAT_VERSION:
        raise CodecError(f"payload format version {version} is not supported (this build reads {FORMAT_VERSION})")
    if reserved != _RESERVED:
        raise CodecError(f"reserved header bytes {reserved.hex()} are not zero")
    try:
        codec = CodecId(codec_code)
    except ValueError:
        raise CodecError(f"unknown codec id {codec_code}") from None
    if dtype_code_ not in _DTYPES:
        raise CodecError(f"unknown dtype code {dtype_code_}")
    if dtype is not None and _DTYPES[dtype_code_] != dtype:
        raise CodecError(f"payload has dtype {_DTYPES[dtype_code_]}, the caller expects {dtype}")
    if ndim > MAX_NDIM or n_sections > MAX_SECTIONS:
        raise CodecError(f"{ndim} dimensions / {n_sections} sections exceed {MAX_NDIM} / {MAX_SECTIONS}")
    header_end = _FIXED.size + 8 * (ndim + n_sections) + _CRC.size
    if len(view) < header_end:
        raise CodecError(f"payload of {len(view)} bytes is truncated inside its {header_end}-byte header")
    numbers = [_U64.unpack_from(view, _FIXED.size + 8 * i)[0] for i in range(ndim + n_sections)]
    dims, lengths = tuple(numbers[:ndim]), numbers[ndim:]
    _check_shape(dims, limit, shape)
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
    return Header(codec, _DTYPES[dtype_code_], dims), sections


def _limit(max_elements: int | None, shape: Sequence[int] | None) -> int:
    """The element bound of one decode: the caller's, else the expected shape's size, else the default."""
    if max_elements is None:
        return math.prod(shape) if shape is not None else DEFAULT_MAX_ELEMENTS
    if max_elements < 0:
        raise ValueError(f"max_elements must be non-negative, got {max_elements}")
    return max_elements


def _check_shape(dims: tuple[int, ...], limit: int, expected: Sequence[int] | None) -> None:
    """``CodecError`` unless ``dims`` is the expected shape (if any), within ``limit`` elements, and a valid
    torch size: an empty tensor may have huge dimensions, but not ones whose strides overflow int64."""
    if expected is not None and dims != tuple(expected):
        raise CodecError(f"payload has shape {dims}, the caller expects {tuple(expected)}")
    numel = math.prod(dims)
    if numel > limit:
        raise CodecError(f"shape {dims} has {numel} elements, over the limit of {limit}")
    if math.prod(max(d, 1) for d in dims) > _MAX_EXTENT:
        raise CodecError(f"shape {dims}: its dimensions overflow a 64-bit size")
