"""The top-k payload: its sections, the value formats, and the parser that validates all of it.

Values (``values=``): ``"fp16"`` (saturated at +-65504), ``"int8"`` (one fp32 absmax scale,
error <= absmax/254; magnitudes saturate at 2**127) or ``"sign"`` (1 bit each, all decoded to
+-mean|selected|, as in 1-bit SGD and CELLM). Non-finite inputs are sent as finite numbers (NaN as
0, +-inf saturated).

Payload sections (after the ``wire.py`` header):

1. params, ``<QQfBB2x`` (24 bytes): count ``m``, first index, scale (fp32; 0 for fp16), index bit
   width, value format, two reserved zero bytes.
2. indices: the ``m - 1`` gaps between consecutive (ascending) indices, each ``width`` bits,
   little-endian bit stream (``bitpack.py``); ``width`` is the bit length of the largest gap (1 when
   ``m <= 1``).
3. values: ``2m`` bytes (fp16), ``m`` bytes (int8) or ``ceil(m / 8)`` bytes (sign bits, 1 = negative).

So a payload is exactly ``payload_size(m, width, values, ndim)`` bytes::

    (16 + 8 * (ndim + 3)) + 24 + ceil((m - 1) * width / 8) + value_bytes(m)

``parse`` checks every field, the section sizes, and that the decoded indices are strictly increasing
and below ``numel``, allocating nothing of the tensor's size; a payload has one valid encoding (zero
reserved and padding bits, the narrowest index width).
"""

from __future__ import annotations

import enum
import math
import struct
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from swarmnet.compression.base import check_section_sizes
from swarmnet.compression.bitpack import MAX_WIDTH, bit_width, packed_size, unpack_indices
from swarmnet.compression.wire import Header
from swarmnet.errors import CodecError

__all__ = [
    "FORMATS",
    "FP32_MAX",
    "ValueFormat",
    "Values",
    "encode_values",
    "pack_params",
    "parse",
    "payload_size",
]

Values = Literal["fp16", "int8", "sign"]

_PARAMS = struct.Struct("<QQfBB2s")
_RESERVED = b"\0\0"
_N_SECTIONS = 3
_FP16_MAX = float(torch.finfo(torch.float16).max)
FP32_MAX = float(torch.finfo(torch.float32).max)
# int8 scales stop at 2**127 so that 127 codes of scale/127 never overflow fp32 (max ~2**128).
_INT8_MAX_SCALE = 2.0**127


class ValueFormat(enum.IntEnum):
    """How the selected values travel; the numbers are permanent wire codes."""

    FP16 = 0
    INT8 = 1
    SIGN = 2


FORMATS: dict[str, ValueFormat] = {"fp16": ValueFormat.FP16, "int8": ValueFormat.INT8, "sign": ValueFormat.SIGN}


def _value_bytes(fmt: ValueFormat, count: int) -> int:
    if fmt is ValueFormat.FP16:
        return 2 * count
    if fmt is ValueFormat.INT8:
        return count
    return (count + 7) // 8


def payload_size(count: int, width: int, values: Values = "fp16", ndim: int = 1) -> int:
    """Exact bytes of a payload holding ``count`` entries with index gaps of ``width`` bits."""
    header = 16 + 8 * (ndim + _N_SECTIONS)  # wire.py: 12 fixed bytes, shape, section lengths, CRC32
    return header + _PARAMS.size + packed_size(max(count - 1, 0), width) + _value_bytes(FORMATS[values], count)


def pack_params(count: int, first: int, scale: float, width: int, fmt: ValueFormat) -> bytes:
    """The params section (reserved bytes zero)."""
    return _PARAMS.pack(count, first, scale, width, fmt, _RESERVED)


def encode_values(fmt: ValueFormat, values: npt.NDArray[np.float32]) -> tuple[bytes, float, npt.NDArray[np.float32]]:
    """(section bytes, scale, the fp32 values the decoder will produce) for fp32 ``values``.

    numpy rather than torch: on a few hundred thousand fp16 values torch's CPU kernels are much slower.
    """
    values = np.nan_to_num(values, nan=0.0, posinf=FP32_MAX, neginf=-FP32_MAX)  # a copy: x stays intact
    if fmt is ValueFormat.FP16:
        half = np.clip(values, np.float32(-_FP16_MAX), np.float32(_FP16_MAX), out=values).astype("<f2")
        return half.tobytes(), 0.0, half.astype(np.float32)
    if fmt is ValueFormat.INT8:
        np.clip(values, np.float32(-_INT8_MAX_SCALE), np.float32(_INT8_MAX_SCALE), out=values)
        scale = float(np.abs(values).max()) if values.size else 0.0  # an fp32 value: exact in the struct
        if scale == 0.0:
            codes = np.zeros(values.size, dtype=np.int8)
        else:
            scaled = np.rint(values.astype(np.float64) * (127.0 / scale))
            codes = np.clip(scaled, np.float64(-127), np.float64(127), out=scaled).astype(np.int8)
        return codes.tobytes(), scale, _dequantize(fmt, codes, scale)
    # Round the mean to fp32 here, so the encoder's feedback uses exactly the scale the wire carries.
    scale = float(np.float32(np.abs(values).mean(dtype=np.float64))) if values.size else 0.0
    negative = values < np.float32(0)
    return np.packbits(negative, bitorder="little").tobytes(), scale, _dequantize(fmt, negative, scale)


def _dequantize(
    fmt: ValueFormat, codes: npt.NDArray[np.int8] | npt.NDArray[np.bool_], scale: float
) -> npt.NDArray[np.float32]:
    """fp32 values from int8 codes or sign flags; shared by encoder and decoder so both agree bit for bit."""
    if fmt is ValueFormat.INT8:
        return codes.astype(np.float32) * np.float32(scale / 127.0)
    magnitude = np.float32(scale)
    return np.where(codes.astype(np.bool_), -magnitude, magnitude).astype(np.float32, copy=False)


def parse(header: Header, sections: list[memoryview]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Validated (ascending indices, fp32 values) of a payload; nothing of ``numel`` size is allocated."""
    numel = header.numel
    if len(sections) != _N_SECTIONS or len(sections[0]) != _PARAMS.size:
        sizes = [len(s) for s in sections]
        raise CodecError(f"TOPK payload: sections {sizes}, expected 3 starting with {_PARAMS.size} bytes of params")
    count, first, scale, width, fmt_code, reserved = _PARAMS.unpack(sections[0])
    if reserved != _RESERVED:
        raise CodecError(f"TOPK payload: reserved parameter bytes {reserved.hex()} are not zero")
    try:
        fmt = ValueFormat(fmt_code)
    except ValueError:
        raise CodecError(f"TOPK payload: unknown value format {fmt_code}") from None
    if count > numel:
        raise CodecError(f"TOPK payload claims {count} entries of a tensor of {numel}")
    max_width = min(MAX_WIDTH, bit_width(numel - 1))  # no gap can exceed numel - 1
    if not 1 <= width <= max_width:
        raise CodecError(f"TOPK payload: index width {width} outside 1..{max_width} for {numel} elements")
    if fmt is ValueFormat.FP16 and scale != 0.0:
        raise CodecError(f"TOPK payload: fp16 values with a scale of {scale}")
    if not (math.isfinite(scale) and scale >= 0.0):
        raise CodecError(f"TOPK payload: scale {scale} is not a finite non-negative number")
    if fmt is ValueFormat.INT8 and scale > _INT8_MAX_SCALE:
        raise CodecError(f"TOPK payload: int8 scale {scale} over 2**127 would overflow fp32")
    check_section_sizes(
        header, sections, [_PARAMS.size, packed_size(max(count - 1, 0), width), _value_bytes(fmt, count)]
    )
    try:
        indices = unpack_indices(sections[1], count, first, width, numel)
    except ValueError as error:
        raise CodecError(f"TOPK payload: {error}") from None
    if fmt is ValueFormat.FP16:
        # An all-ones exponent is inf or NaN: one integer test instead of a float classification.
        if count and bool(np.any((np.frombuffer(sections[2], dtype="<u2") & 0x7C00) == 0x7C00)):
            raise CodecError("TOPK payload: non-finite fp16 values")
        return indices, np.frombuffer(sections[2], dtype="<f2").astype(np.float32)
    if fmt is ValueFormat.INT8:
        codes = np.frombuffer(sections[2], dtype=np.int8)
        if count and int(codes.min()) < -127:
            raise CodecError("TOPK payload: int8 code -128 is not used by this format")
        return indices, _dequantize(fmt, codes, scale)
    packed = np.frombuffer(sections[2], dtype=np.uint8)
    if count % 8 and int(packed[-1]) >> (count % 8):
        raise CodecError("TOPK payload: padding bits after the last sign are not zero")
    return indices, _dequantize(fmt, np.unpackbits(packed, count=count, bitorder="little").astype(np.bool_), scale)
