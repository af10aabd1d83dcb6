"""Blockwise absmax quantization: the int8 and int4 codecs, and the payload plumbing sign1bit shares with them.

A flat tensor is cut into blocks of ``block`` consecutive elements; the last block may be shorter. Each block
stores one fp32 scale ``absmax / qmax`` and its values as integers ``q = round(x / scale)`` in
``[-qmax, qmax]``, so each element decodes to ``q * scale`` within half a step of where it started:
``|x - q * scale| <= scale / 2 = absmax / (2 * qmax)`` (plus fp32 rounding, a few parts in 10**7).
An all-zero block has scale +0.0 and decodes to zeros.

Payload sections, shared by both families::

    params: block size, u32 little-endian | scales: n_blocks x f32 | values: codec-specific packing

The per-element work (quantize, pack, unpack, dequantize-accumulate, error feedback) is done by the tensor-level
kernels of ``swarmnet.kernels`` through their dispatcher; the codecs only frame and validate payloads. The
kernels' layouts are the wire layouts: int8 values one per element, int4 nibbles ``q + 8`` with element ``2i``
in the low nibble of byte ``i`` (an odd count padded with 8), sign bits most significant first.

Non-finite inputs are not representable: a block holding inf or NaN decodes to non-finite values (never to a
plausible finite one). Blocks whose absmax is below ~1e-36 have subnormal scales and lose relative precision.
"""

from __future__ import annotations

import math
import struct
from abc import abstractmethod
from typing import ClassVar

import torch

from swarmnet.compression.base import (
    NON_FINITE,
    Codec,
    allocate,
    as_bytes,
    check_section_sizes,
    flat_float,
    section_tensor,
    unpack_matching,
)
from swarmnet.compression.wire import Header, pack
from swarmnet.errors import CodecError
from swarmnet.kernels.blockwise import blockwise_dequantize_accumulate, blockwise_quantize, values_numel

__all__ = [
    "MAX_BLOCK",
    "BlockwiseCodec",
    "ScaledBlocksCodec",
    "check_scales",
    "feedback_source",
    "fp32_source",
    "fused_target",
    "n_blocks",
    "pack_params",
    "read_block_size",
    "shares_memory",
]

MAX_BLOCK = 1 << 24
_PARAMS = struct.Struct("<I")


def n_blocks(numel: int, block: int) -> int:
    """Number of blocks (the last one possibly partial) covering ``numel`` elements."""
    return -(-numel // block)


def fp32_source(flat: torch.Tensor) -> torch.Tensor:
    """``flat`` (a contiguous 1-D float tensor) as fp32 for the kernels: itself when fp32, else a converted
    copy. fp64 beyond fp32's range (infinities too) saturates to +-fp32 max, as fp16 does in cast.py; the
    block then still decodes to finite values."""
    if flat.dtype == torch.float32:
        return flat
    out = flat.to(torch.float32)
    if flat.dtype == torch.float64:
        out.nan_to_num_(nan=math.nan)  # turns the infinities from values beyond fp32's range into +-max
    return out


def feedback_source(flat: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The fp32 ``grad`` to hand an error-feedback kernel with the flat fp32 ``residual``.

    fp32 ``flat`` is passed as is. Other dtypes are added into ``residual`` here, by torch's mixed-dtype
    ``add_`` (one rounding to fp32, exactly as the generic ``Codec.encode_with_feedback`` does, which a
    conversion to fp32 first would not match for fp64), and the kernel gets a zero stride-0 view instead.
    """
    if flat.dtype == torch.float32:
        return flat
    residual.add_(flat)
    return torch.zeros(()).expand(flat.numel())


def _bounded(scales: torch.Tensor, level_bound: int) -> bool:
    """Whether ``level * scale`` is finite in fp32 for every block and every representable level."""
    if not scales.numel():
        return True
    largest = float(scales.abs().max())  # NaN propagates
    return math.isfinite(largest) and largest * level_bound <= torch.finfo(torch.float32).max


def pack_params(block: int) -> bytes:
    """The params section: the block (or chunk) size as u32 little-endian."""
    return _PARAMS.pack(block)


def read_block_size(header: Header, sections: list[memoryview], what: str = "block size") -> int:
    """Validate the section count and the params section; return the block size it carries."""
    if len(sections) != 3 or len(sections[0]) != _PARAMS.size:
        raise CodecError(
            f"{header.codec.name} payload: expected 3 sections with a {_PARAMS.size}-byte params section, "
            f"got sizes {[len(s) for s in sections]}"
        )
    (block,) = _PARAMS.unpack(sections[0])
    if not 1 <= block <= MAX_BLOCK:
        raise CodecError(f"{header.codec.name} payload: {what} {block} outside [1, {MAX_BLOCK}]")
    return int(block)


def check_scales(header: Header, scales: torch.Tensor) -> None:
    """``CodecError`` if a scale is negative: scales are absmax / qmax or mean |x|, and a negative one would
    flip the signs of its block. NaN (from a block that held NaN) is allowed and decodes to NaN, which
    ``require_finite`` and ``validate`` refuse."""
    if scales.numel() and bool((scales < 0).any()):
        raise CodecError(f"{header.codec.name} payload: negative block scale {float(scales.min())}")


def fused_target(out: torch.Tensor) -> bool:
    """Whether ``out`` suits the kernels' in-place ``decode_accumulate`` / ``encode_with_feedback`` paths (flat
    fp32 memory on the CPU); other targets take the generic ``Codec`` methods."""
    return out.dtype == torch.float32 and out.device.type == "cpu" and out.is_contiguous()


def shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` (non-empty) and ``b`` live in the same storage: the kernels' in-place error feedback needs
    the input and the residual apart."""
    return a.numel() > 0 and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class ScaledBlocksCodec(Codec):
    """Codecs whose payload is [params, one fp32 scale per block, values]: int8, int4 and sign1bit.

    Decoding is the same for all of them: validate every section size (before allocating anything), then let
    the family's dequantize-accumulate kernel add the decoded values into an fp32 target.
    """

    level_bound: ClassVar[int]  # the largest |level| a values section can hold (a decoded value is level * scale)

    @classmethod
    @abstractmethod
    def _validated(cls, header: Header, sections: list[memoryview]) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Block size, scales (fp32) and values (as the kernel takes them) of a payload whose every section size
        has been checked; ``CodecError`` otherwise."""

    @classmethod
    @abstractmethod
    def _accumulate(
        cls, acc: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, block: int, weight: float
    ) -> None:
        """``acc += weight * decoded`` by the family's kernel (``acc``: contiguous fp32)."""

    @classmethod
    def _decode_into(cls, out: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, block: int) -> None:
        """``out[...] = decoded`` (``out``: contiguous fp32): zero, then accumulate; a family may do better."""
        out.zero_()
        cls._accumulate(out, values, scales, block, 1.0)

    @classmethod
    def decode_sections(cls, header: Header, sections: list[memoryview]) -> torch.Tensor:
        """Check every section size, then rebuild ``value * scale`` in the original dtype and shape."""
        block, scales, values = cls._validated(header, sections)
        out = allocate(header.numel, torch.float32, zero=True)
        cls._accumulate(out, values, scales, block, 1.0)  # 0 + 1 * decoded: exactly the decoded values
        if header.dtype != torch.float32:
            out = allocate(header.numel, header.dtype).copy_(out)
        return out.view(header.shape)

    def decode_accumulate(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, alpha: float = 1.0
    ) -> None:
        """``out += alpha * decode(payload)`` in place by the kernel, without a full-size temporary."""
        if not fused_target(out):
            super().decode_accumulate(payload, out, alpha)
            return
        header, sections = unpack_matching(self, payload, out)
        if header.dtype != torch.float32:  # decode() rounds to the payload's dtype: do the same
            out.add_(self.decode_sections(header, sections).view(out.shape), alpha=alpha)
            return
        block, scales, values = self._validated(header, sections)
        self._accumulate(out, values, scales, block, alpha)

    def decode_into(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, *, require_finite: bool = False
    ) -> None:
        """``out[...] = decode(payload)``: zero, then the kernel's accumulate (no full-size temporary).

        Finiteness is decided from the scales alone: every value is a stored level times its block's
        scale, and no level exceeds ``level_bound`` in magnitude, whatever a sender put in the bytes.
        """
        if not fused_target(out):
            super().decode_into(payload, out, require_finite=require_finite)
            return
        header, sections = unpack_matching(self, payload, out)
        if header.dtype != torch.float32:  # values are rounded to the payload's dtype, which may overflow
            super().decode_into(payload, out, require_finite=require_finite)
            return
        block, scales, values = self._validated(header, sections)  # every check before out is touched
        if require_finite and not _bounded(scales, self.level_bound):
            raise CodecError(NON_FINITE)
        self._decode_into(out, values, scales, block)

    def validate(self, payload: bytes | bytearray | memoryview, numel: int) -> None:
        """Check the framing and the scales (which decide finiteness, see ``decode_into``); nothing decoded."""
        target = torch.empty(numel, device="meta")  # only its size is looked at
        header, sections = unpack_matching(self, payload, target)
        if header.dtype != torch.float32:
            super().validate(payload, numel)
            return
        _, scales, _ = self._validated(header, sections)
        if not _bounded(scales, self.level_bound):
            raise CodecError(NON_FINITE)


class BlockwiseCodec(ScaledBlocksCodec):
    """Absmax quantization to ``[-qmax, qmax]`` per block; subclasses choose ``bits`` (8 or 4).

    Payload: sections ``[params (4 bytes), scales (4 * n_blocks), values (values_size(numel))]`` after the
    wire header of ``40 + 8 * ndim`` bytes, ``n_blocks = ceil(numel / block_size)``.
    """

    bits: ClassVar[int]  # 8: int8 values; 4: packed nibbles
    qmax: ClassVar[int]
    _values_dtype: ClassVar[torch.dtype]  # what the kernels take for the values section

    def __init__(self, name: str, block_size: int) -> None:
        if not 1 <= block_size <= MAX_BLOCK:
            raise ValueError(f"block_size must be in [1, {MAX_BLOCK}], got {block_size}")
        self.name = name
        self.block_size = block_size

    @classmethod
    def values_size(cls, numel: int) -> int:
        """Bytes of the values section for ``numel`` elements."""
        return values_numel(numel, cls.bits)

    def encode(self, tensor: torch.Tensor) -> bytes:
        """Quantize ``tensor`` block by block into a payload."""
        values, scales = blockwise_quantize(fp32_source(flat_float(tensor.detach())), self.block_size, self.bits)
        return self._pack(values, scales, tensor.dtype, tensor.shape)

    def encode_with_feedback(self, tensor: torch.Tensor, residual: torch.Tensor) -> bytes:
        """Encode ``tensor + residual`` and leave the compression error in ``residual``, in one kernel pass.

        The payload and residual are those of the generic ``Codec.encode_with_feedback`` (which quantizes
        ``residual + tensor`` and subtracts ``fl(q * scale)``); residuals that are not flat fp32 CPU memory
        take that generic path.
        """
        flat = flat_float(tensor.detach())
        if not fused_target(residual) or residual.numel() != flat.numel() or shares_memory(flat, residual):
            return super().encode_with_feedback(tensor, residual)
        res = residual.view(-1)
        values, scales = blockwise_quantize(feedback_source(flat, res), self.block_size, self.bits, residual=res)
        return self._pack(values, scales, residual.dtype, tensor.shape)

    def _pack(self, values: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype, shape: torch.Size) -> bytes:
        sections: list[bytes | memoryview] = [pack_params(self.block_size), as_bytes(scales), as_bytes(values)]
        return pack(self.codec_id, dtype, shape, sections)

    @classmethod
    def _validated(cls, header: Header, sections: list[memoryview]) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Block size, scales and values of a payload whose every section size and scale has been checked,
        and whose padding (int4, odd count: the high nibble 8 after the last value) is the one encoding of it."""
        block = read_block_size(header, sections)
        numel = header.numel
        check_section_sizes(header, sections, [4, 4 * n_blocks(numel, block), cls.values_size(numel)])
        if cls.bits == 4 and numel % 2 and sections[2][-1] >> 4 != 8:
            raise CodecError(f"{header.codec.name} payload: the padding nibble after the last value is not 8")
        scales = section_tensor(sections[1], torch.float32)
        check_scales(header, scales)
        return block, scales, section_tensor(sections[2], cls._values_dtype)

    @classmethod
    def _accumulate(
        cls, acc: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, block: int, weight: float
    ) -> None:
        blockwise_dequantize_accumulate(acc, values, scales, block, cls.bits, weight)

    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        """Exact for ``numel > 0``: section bytes over raw bytes (the wire header is not counted)."""
        numel = max(numel, 1)
        sections = 4 + 4 * n_blocks(numel, self.block_size) + self.values_size(numel)
        return sections / (numel * dtype.itemsize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, block_size={self.block_size})"
