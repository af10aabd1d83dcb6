"""Blockwise absmax quantization: the machinery the int8 and int4 codecs share (sign1bit reuses the regions).

A flat tensor is cut into blocks of ``block`` consecutive elements; the last block may be shorter. Each block
stores one fp32 scale ``absmax / qmax`` and its values as integers ``q = round(x / scale)`` in
``[-qmax, qmax]``, so each element decodes to ``q * scale`` within half a step of where it started:
``|x - q * scale| <= scale / 2 = absmax / (2 * qmax)`` (plus fp32 rounding, a few parts in 10**7).

Payload sections, shared by both families::

    params: block size, u32 little-endian | scales: n_blocks x f32 | values: codec-specific packing

Speed. The obvious vectorised version makes five or six full-size passes through memory, each with a fresh
100 MB temporary for a 25M-element gradient. Here the tensor goes through in regions of about
``REGION_ELEMENTS`` elements whose temporaries are reused, so they stay in cache and the input is read from
memory once and the output written once. Big outputs are allocated through numpy, which asks the kernel for
transparent huge pages: faulting in 100 MB as 4 KiB pages costs more than the quantization itself.

Non-finite inputs are not representable: a block holding inf or NaN decodes to non-finite values (never to a
plausible finite one). Blocks whose absmax is below ~1e-36 have subnormal scales and lose relative precision.
"""

from __future__ import annotations

import math
import struct
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from swarmnet.compression.base import Codec, check_section_sizes, flat_float
from swarmnet.compression.wire import DEFAULT_MAX_ELEMENTS, Header, pack, unpack
from swarmnet.errors import CodecError

__all__ = [
    "MAX_BLOCK",
    "REGION_ELEMENTS",
    "BlockwiseCodec",
    "Fill",
    "Region",
    "as_bytes",
    "dequantize",
    "empty",
    "fused_target",
    "longest_region",
    "n_blocks",
    "pack_params",
    "plan",
    "quantize",
    "read_block_size",
    "section_tensor",
    "source_region",
    "unpack_matching",
]

# Elements per region: 4 MB of fp32, which stays in L2/L3 with its temporaries. Measured on a 2-core EPYC,
# 512K-2M elements run alike; smaller regions pay more Python overhead per torch call, larger ones spill.
REGION_ELEMENTS = 1 << 20
MAX_BLOCK = 1 << 24
_PARAMS = struct.Struct("<I")
_F32_MAX = torch.finfo(torch.float32).max

Fill = Callable[["Region", torch.Tensor], None]


@dataclass(frozen=True, slots=True)
class Region:
    """``rows`` whole blocks starting at element ``start`` (block ``first_block``), plus, in the last region
    only, a partial block of ``tail`` elements."""

    start: int
    first_block: int
    rows: int
    tail: int
    block: int

    @property
    def size(self) -> int:
        """Number of elements in the region."""
        return self.rows * self.block + self.tail

    @property
    def stop(self) -> int:
        """One past the region's last element."""
        return self.start + self.size

    def blocks(self, values: torch.Tensor) -> list[torch.Tensor]:
        """The region's elements (a 1-D tensor of ``size``) as 2-D views, one row per block: ``(rows, block)``
        for the whole blocks, ``(1, tail)`` for a partial one."""
        body = self.rows * self.block
        parts = [values[:body].view(self.rows, self.block)] if self.rows else []
        if self.tail:
            parts.append(values[body : body + self.tail].view(1, self.tail))
        return parts

    def scale_columns(self, scales: torch.Tensor) -> list[torch.Tensor]:
        """The region's entries of the per-block ``scales`` as columns that broadcast against ``blocks()``."""
        mine = scales[self.first_block : self.first_block + self.rows + (1 if self.tail else 0)]
        parts = [mine[: self.rows, None]] if self.rows else []
        if self.tail:
            parts.append(mine[self.rows :, None])
        return parts


def n_blocks(numel: int, block: int) -> int:
    """Number of blocks (the last one possibly partial) covering ``numel`` elements."""
    return -(-numel // block)


def plan(numel: int, block: int, align: int = 1) -> list[Region]:
    """Cut ``numel`` elements into regions of whole blocks; every region but the last has a multiple of
    ``align`` elements, so each starts on an ``align`` boundary (codecs that pack several values per byte
    need whole bytes per region)."""
    rows_per = max(1, REGION_ELEMENTS // block)
    step = align // math.gcd(block, align)
    rows_per = -(-rows_per // step) * step
    full, tail = divmod(numel, block)
    regions = [Region(b * block, b, min(rows_per, full - b), 0, block) for b in range(0, full, rows_per)]
    if tail:
        # The partial block joins the last region rather than forming its own, which might start unaligned.
        last = regions.pop() if regions else Region(full * block, full, 0, 0, block)
        regions.append(Region(last.start, last.first_block, last.rows, tail, block))
    return regions


def longest_region(numel: int, block: int, align: int = 1) -> int:
    """The size of the largest region ``plan`` makes (0 for no elements)."""
    return max((r.size for r in plan(numel, block, align)), default=0)


def empty(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised 1-D tensor whose memory numpy allocates.

    numpy madvises huge pages for large arrays and torch's allocator does not: for a fresh 100 MB buffer
    that is ~15 ms of page faults instead of ~65 ms here. The tensor is an ordinary one, except that its
    storage cannot be resized.
    """
    if not numel:
        return torch.empty(0, dtype=dtype)  # numpy gives empty arrays stride 0, which view(dtype) refuses
    return torch.from_numpy(np.empty(numel * dtype.itemsize, np.uint8)).view(dtype)


def as_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor of a numpy-compatible dtype, without a copy."""
    return tensor.numpy().data.cast("B")


def section_tensor(section: memoryview, dtype: torch.dtype) -> torch.Tensor:
    """A read-only, zero-copy 1-D tensor over a payload section; callers must never write to it."""
    if not len(section):
        return torch.empty(0, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "buffer is not writable": we only read it
        return torch.frombuffer(section, dtype=dtype)


def source_region(flat: torch.Tensor, region: Region, scratch: torch.Tensor | None) -> torch.Tensor:
    """The region's elements of ``flat`` as fp32: a view when ``flat`` is fp32, else converted into
    ``scratch``. fp64 beyond fp32's range (infinities too) saturates to +-fp32 max, as fp16 does in cast.py;
    the block then still decodes to finite values."""
    part = flat[region.start : region.stop]
    if scratch is None:
        return part
    out = scratch[: region.size]
    out.copy_(part)
    if part.dtype == torch.float64:
        out.nan_to_num_(nan=math.nan)  # turns the infinities from values beyond fp32's range into +-max
    return out


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


def fused_target(out: torch.Tensor) -> bool:
    """Whether ``out`` suits the region-wise ``decode_accumulate`` / ``encode_with_feedback`` paths (flat
    fp32 memory on the CPU); other targets take the generic ``Codec`` methods."""
    return out.dtype == torch.float32 and out.device.type == "cpu" and out.is_contiguous()


def unpack_matching(
    codec: Codec, payload: bytes | bytearray | memoryview, out: torch.Tensor
) -> tuple[Header, list[memoryview]]:
    """Unpack a payload that must be of ``codec``'s family and hold exactly ``out.numel()`` elements (the
    checks and messages of ``Codec.decode_accumulate``)."""
    header, sections = unpack(payload, min(out.numel(), DEFAULT_MAX_ELEMENTS))
    if header.codec != codec.codec_id:
        raise CodecError(f"{codec.name} cannot decode a {header.codec.name} payload")
    if header.numel != out.numel():
        raise CodecError(f"payload holds {header.numel} elements, the target has {out.numel()}")
    return header, sections


def quantize(
    flat: torch.Tensor, block: int, qmax: float, scales: torch.Tensor, align: int = 1
) -> Iterator[tuple[Region, torch.Tensor]]:
    """Quantize ``flat`` region by region: fill its entries of ``scales`` (fp32, one per block) and yield the
    region with its rounded values ``round(x / scale)`` in ``[-qmax, qmax]`` as fp32.

    The yielded tensor is a buffer reused for the next region: consume it before resuming.
    """
    regions = plan(flat.numel(), block, align)
    if not regions:
        return
    size = max(r.size for r in regions)
    work = torch.empty(size)
    scratch = None if flat.dtype == torch.float32 else torch.empty(size)
    for region in regions:
        x = source_region(flat, region, scratch)
        t = work[: region.size]
        for xv, tv, sv in zip(region.blocks(x), region.blocks(t), region.scale_columns(scales), strict=True):
            # amax and amin of the block are two fast vectorised reductions; aminmax(dim=...) is ~10x slower
            # and abs() would write a temporary.
            absmax = torch.maximum(torch.amax(xv, 1, keepdim=True), torch.amin(xv, 1, keepdim=True).neg_())
            torch.div(absmax, qmax, out=sv)
            # Where that division rounded up, step the scale down one ulp: then qmax * scale <= absmax, and
            # a block near fp32's max cannot decode to inf.
            sv.copy_(torch.where(sv * qmax > absmax, torch.nextafter(sv, torch.zeros_like(sv)), sv))
            # Multiplying by the reciprocal is cheaper than dividing every element. A zero block gives
            # inf, clamped to a finite value so that 0 * it stays 0; so does a subnormal absmax. |x| <= absmax
            # keeps every product within qmax * (1 + 2**-23), so nothing rounds past qmax.
            inverse = (qmax / absmax).clamp_(max=_F32_MAX)
            torch.mul(xv, inverse, out=tv).round_()
        yield region, t


def dequantize(
    numel: int, block: int, scales: torch.Tensor, fill: Fill, out: torch.Tensor | None = None, align: int = 1
) -> Iterator[tuple[Region, torch.Tensor]]:
    """Decode region by region: ``fill(region, t)`` writes the integer values as fp32 into ``t``, which is
    then scaled per block and yielded. ``t`` is the region of ``out`` (flat fp32) when given, else a reused
    buffer to consume before resuming."""
    regions = plan(numel, block, align)
    if not regions:
        return
    buffer = torch.empty(max(r.size for r in regions)) if out is None else out
    for region in regions:
        t = buffer[: region.size] if out is None else buffer[region.start : region.stop]
        fill(region, t)
        for tv, sv in zip(region.blocks(t), region.scale_columns(scales), strict=True):
            tv.mul_(sv)
        yield region, t


class ScaledBlocksCodec(Codec):
    """Codecs whose payload is [params, one fp32 scale per block, values]: int8, int4 and sign1bit.

    Decoding is the same for all of them: a fill writes each region's unscaled values (integers or
    +-1), which ``dequantize`` scales per block; only the fill differs.
    """

    align: ClassVar[int] = 1  # elements per whole byte of the values section, for region boundaries

    @classmethod
    @abstractmethod
    def _fill_for(cls, header: Header, sections: list[memoryview]) -> tuple[int, torch.Tensor, Fill]:
        """The validated block size, the scales, and the fill for the values section."""

    @classmethod
    def decode_sections(cls, header: Header, sections: list[memoryview]) -> torch.Tensor:
        """Check every section size, then rebuild ``value * scale`` in the original dtype and shape."""
        block, scales, fill = cls._fill_for(header, sections)
        numel = header.numel
        out = empty(numel, header.dtype)
        direct = out if header.dtype == torch.float32 else None
        for region, decoded in dequantize(numel, block, scales, fill, direct, cls.align):
            if direct is None:
                out[region.start : region.stop] = decoded
        return out.view(header.shape)

    def decode_accumulate(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, alpha: float = 1.0
    ) -> None:
        """``out += alpha * decode(payload)`` region by region, without a full-size temporary."""
        if not fused_target(out):
            super().decode_accumulate(payload, out, alpha)
            return
        header, sections = unpack_matching(self, payload, out)
        if header.dtype != torch.float32:  # decode() rounds to the payload's dtype: do the same
            out.add_(self.decode_sections(header, sections).view(out.shape), alpha=alpha)
            return
        block, scales, fill = self._fill_for(header, sections)
        flat = out.view(-1)
        for region, decoded in dequantize(header.numel, block, scales, fill, None, self.align):
            flat[region.start : region.stop].add_(decoded, alpha=alpha)


class BlockwiseCodec(ScaledBlocksCodec):
    """Absmax quantization to ``[-qmax, qmax]`` per block; subclasses only choose how values are packed.

    Payload: sections ``[params (4 bytes), scales (4 * n_blocks), values (values_size(numel))]`` after the
    wire header of ``40 + 8 * ndim`` bytes, ``n_blocks = ceil(numel / block_size)``.
    """

    qmax: ClassVar[int]

    def __init__(self, name: str, block_size: int) -> None:
        if not 1 <= block_size <= MAX_BLOCK:
            raise ValueError(f"block_size must be in [1, {MAX_BLOCK}], got {block_size}")
        self.name = name
        self.block_size = block_size

    @staticmethod
    @abstractmethod
    def values_size(numel: int) -> int:
        """Bytes of the values section for ``numel`` elements."""

    @abstractmethod
    def _storer(self, values: torch.Tensor, longest: int) -> Fill:
        """A function that packs one region's rounded values (fp32) into ``values`` (uint8); no region has
        more than ``longest`` elements."""

    @classmethod
    @abstractmethod
    def _loader(cls, values: torch.Tensor, longest: int) -> Fill:
        """A function that unpacks one region's integer values from ``values`` (uint8) into an fp32 tensor; no
        region has more than ``longest`` elements."""

    def encode(self, tensor: torch.Tensor) -> bytes:
        """Quantize ``tensor`` block by block into a payload."""
        flat = flat_float(tensor.detach())
        numel = flat.numel()
        scales = empty(n_blocks(numel, self.block_size), torch.float32)
        values = empty(self.values_size(numel), torch.uint8)
        store = self._storer(values, longest_region(numel, self.block_size, self.align))
        for region, rounded in quantize(flat, self.block_size, self.qmax, scales, self.align):
            store(region, rounded)
        sections: list[bytes | memoryview] = [pack_params(self.block_size), as_bytes(scales), as_bytes(values)]
        return pack(self.codec_id, tensor.dtype, tensor.shape, sections)

    @classmethod
    def _validated(cls, header: Header, sections: list[memoryview]) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Block size, scales and values of a payload whose every section size has been checked."""
        block = read_block_size(header, sections)
        numel = header.numel
        check_section_sizes(header, sections, [4, 4 * n_blocks(numel, block), cls.values_size(numel)])
        return block, section_tensor(sections[1], torch.float32), section_tensor(sections[2], torch.uint8)

    @classmethod
    def _fill_for(cls, header: Header, sections: list[memoryview]) -> tuple[int, torch.Tensor, Fill]:
        """Block size, scales, and a fill writing each region's integers ``q``."""
        block, scales, values = cls._validated(header, sections)
        return block, scales, cls._loader(values, longest_region(header.numel, block, cls.align))

    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        """Exact for ``numel > 0``: section bytes over raw bytes (the wire header is not counted)."""
        numel = max(numel, 1)
        sections = 4 + 4 * n_blocks(numel, self.block_size) + self.values_size(numel)
        return sections / (numel * dtype.itemsize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, block_size={self.block_size})"
