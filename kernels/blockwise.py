"""Blockwise absmax quantization to int8 / int4 (optionally with error feedback) and its dequantize-accumulate.

A flat fp32 tensor of ``n`` elements is cut into ``ceil(n / block_size)`` blocks of ``block_size`` consecutive
elements (the last may be shorter). With ``qmax = 127`` (8 bits) or ``7`` (4 bits), each block stores one fp32
scale and one integer ``q`` in ``[-qmax, qmax]`` per element, so that ``q * scale`` is within ``scale / 2`` of
the element. The exact math, which every implementation follows bit for bit (``a / b``, ``a * b``: one fp32
operation, rounded to nearest even)::

    v       = x                  (or x + residual, with error feedback)
    absmax  = max |v| over the block
    scale   = absmax / qmax, stepped down one ulp (toward 0) where scale * qmax > absmax, so that a block
              near fp32's max never decodes to inf
    inverse = min((1 / absmax) * qmax, fp32 max)        # once per block; a zero block gives fp32 max
    q       = clamp(round_half_even(v * inverse), -qmax, qmax)
    residual <- v - (q * scale)                         (error feedback only; two roundings, never an FMA)

For finite ``v`` the clamp never changes anything (the CPU path skips it), a zero block has scale +0.0 and
all ``q = 0``, and ``decoded + residual == v`` exactly (Sterbenz's lemma), so error feedback loses nothing.
Inputs must be finite: a block holding inf or NaN gets a non-finite scale and unspecified values.
``inverse`` is the reciprocal times ``qmax`` (not ``qmax / absmax``) because that is what
``swarmnet.compression``'s codecs compute (``qmax / t`` is ``t.reciprocal() * qmax`` in torch): payloads match
theirs bit for bit, except all-zero blocks, which get scale -0.0 and NaN-derived values there.

Packing: 8 bits: ``q`` as int8, one per element. 4 bits: uint8, element ``2i`` in the low nibble of byte ``i``
and ``2i + 1`` in the high nibble, each stored as ``q + 8`` (1..15); for an odd ``n`` the last high nibble is 8.

The CPU path goes through the tensor in regions of about ``REGION_ELEMENTS`` whole blocks whose temporaries are
reused and stay in cache, so memory is read and written about once; large outputs are allocated through numpy,
which asks for huge pages (faulting in 100 MB of 4 KiB pages costs more than the quantization itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812

from swarmnet.buffers import empty
from swarmnet.errors import KernelError
from swarmnet.kernels.dispatch import Dispatch, select_backend
from swarmnet.kernels.threads import parallel_map

__all__ = [
    "DEQUANTIZE_DISPATCH",
    "QUANTIZE_DISPATCH",
    "REGION_ELEMENTS",
    "blockwise_dequantize_accumulate",
    "blockwise_dequantize_accumulate_cpu",
    "blockwise_dequantize_accumulate_reference",
    "blockwise_quantize",
    "blockwise_quantize_cpu",
    "blockwise_quantize_reference",
    "check_dequantize_args",
    "check_quantize_args",
    "qmax_for",
    "unpack_values",
    "values_numel",
]

# 4 MB of fp32 per region: stays in L2/L3 with its temporaries (the region size compression/blockwise.py uses).
REGION_ELEMENTS = 1 << 20
F32_MAX = torch.finfo(torch.float32).max
_QMAX = {8: 127.0, 4: 7.0}
_VALUE_DTYPES = {8: torch.int8, 4: torch.uint8}


class Quantize(Protocol):
    def __call__(
        self, x: torch.Tensor, block_size: int, bits: int, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class DequantizeAccumulate(Protocol):
    def __call__(
        self,
        acc: torch.Tensor,
        values: torch.Tensor,
        scales: torch.Tensor,
        block_size: int,
        bits: int,
        weight: float = 1.0,
    ) -> None: ...


def qmax_for(bits: int) -> float:
    """The largest magnitude of ``q`` for ``bits`` (127 or 7); ``ValueError`` for other widths."""
    if bits not in _QMAX:
        raise ValueError(f"bits must be 8 or 4, got {bits!r}")
    return _QMAX[bits]


def values_numel(numel: int, bits: int) -> int:
    """Elements of the values tensor for ``numel`` quantized elements: ``numel`` int8, or ``ceil(numel / 2)``
    uint8 bytes of two nibbles."""
    return numel if bits == 8 else (numel + 1) // 2


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")


def check_quantize_args(x: torch.Tensor, block_size: int, bits: int, residual: torch.Tensor | None) -> float:
    """Validate ``blockwise_quantize``'s arguments (``ValueError``); return ``qmax``."""
    qmax = qmax_for(bits)
    _check_block_size(block_size)
    if residual is not None:
        if residual.numel() != x.numel():
            raise ValueError(f"residual has {residual.numel()} elements, x has {x.numel()}")
        if not residual.is_contiguous():
            raise ValueError("residual must be contiguous: it is updated in place")
    return qmax


def check_dequantize_args(
    acc: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, block_size: int, bits: int
) -> None:
    """Validate ``blockwise_dequantize_accumulate``'s arguments before anything is written: first ``ValueError``
    for sizes and layout, then ``KernelError`` for the dtype or device of ``values``."""
    qmax_for(bits)
    _check_block_size(block_size)
    n = acc.numel()
    if values.numel() != values_numel(n, bits):
        raise ValueError(f"{bits}-bit values for {n} elements need {values_numel(n, bits)}, got {values.numel()}")
    if scales.numel() != -(-n // block_size):
        raise ValueError(
            f"{n} elements in blocks of {block_size} need {-(-n // block_size)} scales, got {scales.numel()}"
        )
    if not acc.is_contiguous():
        raise ValueError("acc must be contiguous: it is updated in place")
    if values.dtype != _VALUE_DTYPES[bits]:
        raise KernelError(f"{bits}-bit values must be {_VALUE_DTYPES[bits]}, got {values.dtype}")
    if values.device != acc.device:
        raise KernelError(f"values are on {values.device}, acc on {acc.device}")


# ----------------------------------------------------------------------------------------------- reference


def blockwise_quantize_reference(
    x: torch.Tensor, block_size: int, bits: int, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch version of ``blockwise_quantize``: the definition of correct."""
    qmax = check_quantize_args(x, block_size, bits, residual)
    v = x.reshape(-1) if residual is None else x.reshape(-1) + residual.reshape(-1)
    n = v.numel()
    n_blocks = -(-n // block_size)
    blocks = F.pad(v, (0, n_blocks * block_size - n)).view(n_blocks, block_size)  # zero padding: absmax unchanged
    absmax = blocks.abs().amax(dim=1)
    scales = absmax / qmax
    scales = torch.where(scales * qmax > absmax, torch.nextafter(scales, torch.zeros_like(scales)), scales)
    inverse = (torch.reciprocal(absmax) * qmax).clamp(max=F32_MAX)
    q = torch.round(blocks * inverse[:, None]).clamp(-qmax, qmax).view(-1)[:n]  # torch.round: half to even
    if residual is not None:
        residual.copy_((v - q * scales.repeat_interleave(block_size)[:n]).view_as(residual))
    if bits == 8:
        return q.to(torch.int8), scales
    nibbles = F.pad(q + 8, (0, n % 2), value=8.0).to(torch.uint8)
    return nibbles[0::2] | (nibbles[1::2] << 4), scales


def unpack_values(values: torch.Tensor, n: int, bits: int) -> torch.Tensor:
    """The ``n`` integers ``q`` held by a values tensor of ``bits``, as fp32 (plain PyTorch, full-size)."""
    if bits == 8:
        return values.reshape(-1).float()
    flat = values.reshape(-1)
    nibbles = torch.stack([flat & 0x0F, flat >> 4], dim=1).view(-1)[:n]
    return nibbles.float() - 8


def blockwise_dequantize_accumulate_reference(
    acc: torch.Tensor,
    values: torch.Tensor,
    scales: torch.Tensor,
    block_size: int,
    bits: int,
    weight: float = 1.0,
) -> None:
    """Plain PyTorch version of ``blockwise_dequantize_accumulate`` (with full-size temporaries)."""
    check_dequantize_args(acc, values, scales, block_size, bits)
    n = acc.numel()
    decoded = unpack_values(values, n, bits) * scales.reshape(-1).repeat_interleave(block_size)[:n]
    acc.add_(decoded.view_as(acc), alpha=weight)


# ----------------------------------------------------------------------------------------------- CPU path


def _regions(n: int, block_size: int, align: int) -> Iterator[tuple[int, int, int, int]]:
    """``(start, first_block, whole_rows, tail)`` of regions of about ``REGION_ELEMENTS`` elements: whole
    blocks, each region but the last a multiple of ``align`` elements (whole bytes of nibbles); the partial
    last block (``tail`` elements) joins the last region."""
    rows_per = max(1, REGION_ELEMENTS // block_size)
    if align == 2 and block_size % 2:
        rows_per += rows_per % 2
    full, tail = divmod(n, block_size)
    for first in range(0, full, rows_per):
        rows = min(rows_per, full - first)
        yield first * block_size, first, rows, tail if first + rows == full else 0
    if tail and not full:
        yield 0, 0, 0, tail


def _split(t: torch.Tensor, rows: int, block_size: int, tail: int) -> list[torch.Tensor]:
    """A region's elements as 2-D views, one row per block: ``(rows, block_size)`` and ``(1, tail)``."""
    body = rows * block_size
    parts = [t[:body].view(rows, block_size)] if rows else []
    if tail:
        parts.append(t[body : body + tail].view(1, tail))
    return parts


def _columns(scales: torch.Tensor, first: int, rows: int, tail: int) -> list[torch.Tensor]:
    """The region's scales as columns that broadcast against ``_split``'s views."""
    mine = scales[first : first + rows + (1 if tail else 0)]
    parts = [mine[:rows, None]] if rows else []
    if tail:
        parts.append(mine[rows:, None])
    return parts


def _pack_nibbles(values: torch.Tensor, start: int, rounded: torch.Tensor) -> None:
    """Pack a region's rounded values (fp32, starting at the even element ``start``) into ``values`` (uint8).

    Byte pairs (a, b) of int8 nibbles read as the int16 a + 256 b, and (w | w >> 4) has a | b << 4 in its low
    byte, which the int16 -> uint8 copy keeps (conversion to an unsigned type is modular). The scratch is the
    region's own: regions run on several threads at once.
    """
    size, n_bytes = rounded.numel(), (rounded.numel() + 1) // 2
    pairs = torch.empty(2 * n_bytes, dtype=torch.int8)
    pairs[:size].copy_(rounded)
    pairs[size:].zero_()  # the padding value of an odd count (8 once offset)
    pairs.view(torch.uint8).add_(8)
    words = pairs.view(torch.int16)
    packed = torch.bitwise_right_shift(words, 4).bitwise_or_(words)
    values[start // 2 : start // 2 + n_bytes].copy_(packed)


Region = tuple[int, int, int, int]


def blockwise_quantize_cpu(
    x: torch.Tensor, block_size: int, bits: int, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Region-wise version of ``blockwise_quantize`` for CPU tensors (same arguments, results and effects);
    regions run in parallel (``parallel_map``)."""
    qmax = check_quantize_args(x, block_size, bits, residual)
    src = x.reshape(-1)
    res = None if residual is None else residual.view(-1)
    n = src.numel()
    scales = empty(-(-n // block_size), torch.float32)
    values = empty(values_numel(n, bits), _VALUE_DTYPES[bits])

    def quantize_region(region: Region) -> None:
        start, first, rows, tail = region
        stop = start + rows * block_size + tail
        # With feedback, v is built in the residual's own memory, which then only needs q * scale subtracted.
        v = src[start:stop] if res is None else res[start:stop].add_(src[start:stop])
        t = torch.empty(stop - start)
        for vb, tb, sb in zip(
            _split(v, rows, block_size, tail),
            _split(t, rows, block_size, tail),
            _columns(scales, first, rows, tail),
            strict=True,
        ):
            # amax and amin are two fast vectorised reductions; abs() of the block would write a temporary. The
            # final abs_ turns the -0.0 that maximum(0.0, -0.0) may give for a zero block into +0.0.
            absmax = torch.maximum(torch.amax(vb, 1, keepdim=True), torch.amin(vb, 1, keepdim=True).neg_()).abs_()
            torch.div(absmax, qmax, out=sb)
            sb.copy_(torch.where(sb * qmax > absmax, torch.nextafter(sb, torch.zeros_like(sb)), sb))
            inverse = torch.reciprocal(absmax).mul_(qmax).clamp_(max=F32_MAX)
            torch.mul(vb, inverse, out=tb).round_()  # no clamp: provably within [-qmax, qmax] (module doc)
        if bits == 8:
            values[start:stop].copy_(t)  # exact: integers in [-127, 127]
        else:
            _pack_nibbles(values, start, t)
        if res is not None:
            # v - fl(q * scale) with two roundings, as documented: addcmul_ would fuse them into an FMA on
            # some builds and not others. t is free once q is stored.
            for tb, sb in zip(_split(t, rows, block_size, tail), _columns(scales, first, rows, tail), strict=True):
                tb.mul_(sb)
            v.sub_(t)

    parallel_map(quantize_region, list(_regions(n, block_size, 2 if bits == 4 else 1)))
    return values, scales


def blockwise_dequantize_accumulate_cpu(
    acc: torch.Tensor,
    values: torch.Tensor,
    scales: torch.Tensor,
    block_size: int,
    bits: int,
    weight: float = 1.0,
) -> None:
    """Region-wise version of ``blockwise_dequantize_accumulate`` for CPU tensors: the decoded values live
    only in a region-sized buffer; regions run in parallel (``parallel_map``)."""
    check_dequantize_args(acc, values, scales, block_size, bits)
    n = acc.numel()
    flat, packed, scale_flat = acc.view(-1), values.reshape(-1), scales.reshape(-1)

    def accumulate_region(region: Region) -> None:
        start, first, rows, tail = region
        stop = start + rows * block_size + tail
        t = torch.empty(stop - start)
        if bits == 8:
            t.copy_(packed[start:stop])
        else:
            # The inverse spread of _pack_nibbles: byte p = a | b << 4 as the int16 p, and (p | p << 4) & 0x0F0F
            # holds a in its low byte and b in its high byte, i.e. the nibbles in element order as bytes.
            n_bytes = (stop - start + 1) // 2
            w = packed[start // 2 : start // 2 + n_bytes].to(torch.int16)
            w.bitwise_or_(torch.bitwise_left_shift(w, 4)).bitwise_and_(0x0F0F)
            offset = w.view(torch.uint8).sub_(8)  # modular: 1..15 - 8 read as int8 is -7..7
            t.copy_(offset.view(torch.int8)[: stop - start])
        for tb, sb in zip(_split(t, rows, block_size, tail), _columns(scale_flat, first, rows, tail), strict=True):
            tb.mul_(sb)
        flat[start:stop].add_(t, alpha=weight)

    parallel_map(accumulate_region, list(_regions(n, block_size, 2 if bits == 4 else 1)))


# ----------------------------------------------------------------------------------------------- public


def _load_quantize_triton() -> Quantize:
    from swarmnet.kernels.triton_blockwise import blockwise_quantize_triton

    return blockwise_quantize_triton


def _load_dequantize_triton() -> DequantizeAccumulate:
    from swarmnet.kernels.triton_blockwise import blockwise_dequantize_accumulate_triton

    return blockwise_dequantize_accumulate_triton


QUANTIZE_DISPATCH: Dispatch[Quantize] = Dispatch(
    "blockwise_quantize",
    reference=blockwise_quantize_reference,
    cpu=blockwise_quantize_cpu,
    load_triton=_load_quantize_triton,
)
DEQUANTIZE_DISPATCH: Dispatch[DequantizeAccumulate] = Dispatch(
    "blockwise_dequantize_accumulate",
    reference=blockwise_dequantize_accumulate_reference,
    cpu=blockwise_dequantize_accumulate_cpu,
    load_triton=_load_dequantize_triton,
)


def blockwise_quantize(
    x: torch.Tensor, block_size: int, bits: int, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x`` (fp32, any shape, read flat) block by block to ``bits`` (8 or 4) per element.

    Returns ``(values, scales)``: ``values`` is int8 of ``n = x.numel()`` elements (8 bits) or uint8 of
    ``ceil(n / 2)`` bytes of two nibbles (4 bits); ``scales`` is fp32 of ``ceil(n / block_size)``; both 1-D,
    on ``x``'s device. With ``residual`` (fp32, contiguous, ``n`` elements, not overlapping ``x``), ``x +
    residual`` is quantized and ``residual`` is overwritten in place with what the quantization lost
    (error feedback). The exact math and packing are in the module docstring.

    Raises ``ValueError`` for ``bits`` other than 8/4, a ``block_size`` below 1, or a mismatched or
    non-contiguous residual, and ``KernelError`` for non-fp32 tensors or devices without an implementation.
    """
    tensors = (x,) if residual is None else (x, residual)
    backend = select_backend(*tensors)
    return QUANTIZE_DISPATCH.impl(backend)(x, block_size, bits, residual)


def blockwise_dequantize_accumulate(
    acc: torch.Tensor,
    values: torch.Tensor,
    scales: torch.Tensor,
    block_size: int,
    bits: int,
    weight: float = 1.0,
) -> None:
    """``acc += weight * (q * scale)`` in place, for the ``(values, scales)`` of ``blockwise_quantize``.

    ``acc``: fp32, contiguous, any shape (read flat), ``n`` elements; ``values``: int8 of ``n`` (8 bits) or
    uint8 of ``ceil(n / 2)`` (4 bits) on ``acc``'s device; ``scales``: fp32 of ``ceil(n / block_size)``.
    Each element is ``acc + weight * fl(q * scale)`` in fp32; implementations may fuse the final multiply-add
    (one rounding instead of two), so results agree to an ulp of the result, and exactly for ``weight = 1``.
    No full-size temporary is made on the CPU path. Every argument is checked before ``acc`` is touched:
    ``ValueError`` for sizes and layout, ``KernelError`` for dtypes and devices.
    """
    backend = select_backend(acc, scales)
    DEQUANTIZE_DISPATCH.impl(backend)(acc, values, scales, block_size, bits, weight)
