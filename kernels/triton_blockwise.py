"""Triton versions of ``blockwise_quantize`` and ``blockwise_dequantize_accumulate``.

Imported only through ``swarmnet.kernels.blockwise``'s dispatchers (importing triton costs seconds).

Quantize: each program takes ``ROWS`` rows of a 2-D tile ``[ROWS, COLS]``; for 8 bits a row is one block, for
4 bits a row is two consecutive blocks read as ``block_size`` (even, odd) element pairs, so that every byte of
nibbles is built by one program even when ``block_size`` is odd. The absmax is a ``tl.max`` over each row
(masked to each of its two blocks for 4 bits), and the block is quantized while still in registers. Blocks
longer than ``COLS`` take a two-pass loop instead (absmax, then quantize, re-reading the block from cache).
Dequantize-accumulate is elementwise (pairs for 4 bits), gathering each element's scale.

Bit-exactness with the reference: divisions use ``div_rn`` (IEEE; Triton's ``/`` is approximate on NVIDIA),
and rounding half to even is libdevice ``rint`` on the GPU. The interpreter has no libdevice, so there it is
``(t + 1.5 * 2**23) - 1.5 * 2**23``: exact round-half-even for ``|t| < 2**22`` (the fp32 sum has no fraction
bits left), and ``|t| <= qmax * (1 + 2**-22)`` here. Both give the reference's ``q`` and ``scale`` exactly, and
with FMA contraction off (``enable_fp_fusion=False``) the residual ``v - q * scale`` is rounded twice as there.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from swarmnet.kernels.blockwise import check_dequantize_args, check_quantize_args, values_numel

__all__ = ["GPU_TILE", "INTERPRETER_TILE", "blockwise_dequantize_accumulate_triton", "blockwise_quantize_triton"]

# Elements per program. 4096 fp32 with 8 warps is 16 per thread, enough loads in flight to saturate HBM. The
# interpreter costs milliseconds per program plus numpy time per element, so it takes far larger tiles. Blocks
# longer than the tile take the looping path (tests shrink INTERPRETER_TILE to reach it cheaply).
GPU_TILE = 4096
INTERPRETER_TILE = 1 << 16
_NUM_WARPS = 8


@triton.jit
def _round_half_even(t, USE_RINT: tl.constexpr):
    if USE_RINT:  # noqa: SIM108  (a statement if keeps the interpreter branch and its comment apart)
        r = libdevice.rint(t)
    else:
        # 1.5 * 2**23: the sum lies in [2**23, 2**24), where fp32 has no fraction bits, so the add rounds half to
        # even and the subtraction is exact. The interpreter does not fuse or reassociate these.
        r = (t + 12582912.0) - 12582912.0
    return r


@triton.jit
def _scale_inverse(absmax, QMAX: tl.constexpr):
    scale = tl.math.div_rn(absmax, QMAX)
    # One ulp toward zero where the quotient rounded up far enough that scale * qmax > absmax (scale > 0 there,
    # so the bit pattern minus one is the next float down).
    down = (scale.to(tl.int32, bitcast=True) - 1).to(tl.float32, bitcast=True)
    scale = tl.where(scale * QMAX > absmax, down, scale)
    inverse = tl.minimum(tl.math.div_rn(1.0, absmax) * QMAX, 3.4028234663852886e38)  # fp32 max: 0 * it is 0
    return scale, inverse


@triton.jit
def _load_v(x_ptr, r_ptr, offs, mask, HAS_RES: tl.constexpr):
    v = tl.load(x_ptr + offs, mask=mask, other=0.0)
    if HAS_RES:
        v = v + tl.load(r_ptr + offs, mask=mask, other=0.0)
    return v


@triton.jit
def _quantize_values(v, inverse, QMAX: tl.constexpr, USE_RINT: tl.constexpr):
    q = _round_half_even(v * inverse, USE_RINT)
    return tl.minimum(tl.maximum(q, -QMAX), QMAX)


@triton.jit
def _quantize8_kernel(
    x_ptr, r_ptr, q_ptr, s_ptr, n, block_size, n_blocks,
    QMAX: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr, SINGLE: tl.constexpr,
    HAS_RES: tl.constexpr, USE_RINT: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # int64: tensors beyond 2**31 elements
    row_ok = rows < n_blocks
    starts = rows * block_size
    ends = tl.minimum(starts + block_size, n)[:, None]
    cols = tl.arange(0, COLS)[None, :]
    if SINGLE:
        offs = starts[:, None] + cols
        mask = row_ok[:, None] & (offs < ends)
        v = _load_v(x_ptr, r_ptr, offs, mask, HAS_RES)
        scale, inverse = _scale_inverse(tl.max(tl.abs(v), axis=1), QMAX)
        tl.store(s_ptr + rows, scale, mask=row_ok)
        q = _quantize_values(v, inverse[:, None], QMAX, USE_RINT)
        tl.store(q_ptr + offs, q.to(tl.int8), mask=mask)
        if HAS_RES:
            tl.store(r_ptr + offs, v - q * scale[:, None], mask=mask)
    else:
        absmax = tl.zeros([ROWS], dtype=tl.float32)
        for c in range(0, block_size, COLS):
            offs = starts[:, None] + c + cols
            mask = row_ok[:, None] & (offs < ends)
            absmax = tl.maximum(absmax, tl.max(tl.abs(_load_v(x_ptr, r_ptr, offs, mask, HAS_RES)), axis=1))
        scale, inverse = _scale_inverse(absmax, QMAX)
        tl.store(s_ptr + rows, scale, mask=row_ok)
        for c in range(0, block_size, COLS):
            offs = starts[:, None] + c + cols
            mask = row_ok[:, None] & (offs < ends)
            v = _load_v(x_ptr, r_ptr, offs, mask, HAS_RES)
            q = _quantize_values(v, inverse[:, None], QMAX, USE_RINT)
            tl.store(q_ptr + offs, q.to(tl.int8), mask=mask)
            if HAS_RES:
                tl.store(r_ptr + offs, v - q * scale[:, None], mask=mask)


@triton.jit
def _pairs(rows, row_ok, j, block_size, n):
    # Row r holds blocks 2r and 2r + 1: elements [2 r bs, 2 (r + 1) bs), pair j at elements 2j and 2j + 1 of it.
    offs0 = 2 * rows[:, None] * block_size + 2 * j
    in_row = row_ok[:, None] & (j < block_size)
    first0 = 2 * j < block_size  # whether each element of the pair is in the row's first block
    first1 = 2 * j + 1 < block_size
    return offs0, in_row & (offs0 < n), in_row & (offs0 + 1 < n), first0, first1


@triton.jit
def _pair_absmax(v0, v1, first0, first1):
    a0, a1 = tl.abs(v0), tl.abs(v1)
    max_a = tl.maximum(tl.max(tl.where(first0, a0, 0.0), axis=1), tl.max(tl.where(first1, a1, 0.0), axis=1))
    max_b = tl.maximum(tl.max(tl.where(first0, 0.0, a0), axis=1), tl.max(tl.where(first1, 0.0, a1), axis=1))
    return max_a, max_b


@triton.jit
def _pair_store(
    v0, v1, offs0, m0, m1, first0, first1, scale_a, scale_b, inv_a, inv_b, byte_offs, q_ptr, r_ptr,
    QMAX: tl.constexpr, HAS_RES: tl.constexpr, USE_RINT: tl.constexpr,
):  # fmt: skip
    s0 = tl.where(first0, scale_a[:, None], scale_b[:, None])
    s1 = tl.where(first1, scale_a[:, None], scale_b[:, None])
    q0 = _quantize_values(v0, tl.where(first0, inv_a[:, None], inv_b[:, None]), QMAX, USE_RINT)
    q1 = _quantize_values(v1, tl.where(first1, inv_a[:, None], inv_b[:, None]), QMAX, USE_RINT)
    # Masked elements are 0, so a missing last odd element becomes the padding nibble 8.
    byte = (q0 + 8.0).to(tl.int32) | ((q1 + 8.0).to(tl.int32) << 4)
    tl.store(q_ptr + byte_offs, byte.to(tl.uint8), mask=m0)
    if HAS_RES:
        tl.store(r_ptr + offs0, v0 - q0 * s0, mask=m0)
        tl.store(r_ptr + offs0 + 1, v1 - q1 * s1, mask=m1)


@triton.jit
def _quantize4_kernel(
    x_ptr, r_ptr, q_ptr, s_ptr, n, block_size, n_blocks,
    QMAX: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr, SINGLE: tl.constexpr,
    HAS_RES: tl.constexpr, USE_RINT: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = 2 * rows < n_blocks
    second_ok = row_ok & (2 * rows + 1 < n_blocks)
    cols = tl.arange(0, COLS)[None, :]
    if SINGLE:
        offs0, m0, m1, first0, first1 = _pairs(rows, row_ok, cols, block_size, n)
        v0 = _load_v(x_ptr, r_ptr, offs0, m0, HAS_RES)
        v1 = _load_v(x_ptr, r_ptr, offs0 + 1, m1, HAS_RES)
        max_a, max_b = _pair_absmax(v0, v1, first0, first1)
    else:
        max_a = tl.zeros([ROWS], dtype=tl.float32)
        max_b = tl.zeros([ROWS], dtype=tl.float32)
        for c in range(0, block_size, COLS):
            offs0, m0, m1, first0, first1 = _pairs(rows, row_ok, c + cols, block_size, n)
            v0 = _load_v(x_ptr, r_ptr, offs0, m0, HAS_RES)
            v1 = _load_v(x_ptr, r_ptr, offs0 + 1, m1, HAS_RES)
            chunk_a, chunk_b = _pair_absmax(v0, v1, first0, first1)
            max_a, max_b = tl.maximum(max_a, chunk_a), tl.maximum(max_b, chunk_b)
    scale_a, inv_a = _scale_inverse(max_a, QMAX)
    scale_b, inv_b = _scale_inverse(max_b, QMAX)
    tl.store(s_ptr + 2 * rows, scale_a, mask=row_ok)
    tl.store(s_ptr + 2 * rows + 1, scale_b, mask=second_ok)
    if SINGLE:
        byte_offs = rows[:, None] * block_size + cols
        _pair_store(
            v0, v1, offs0, m0, m1, first0, first1, scale_a, scale_b, inv_a, inv_b, byte_offs, q_ptr, r_ptr,
            QMAX, HAS_RES, USE_RINT,
        )  # fmt: skip
    else:
        for c in range(0, block_size, COLS):
            offs0, m0, m1, first0, first1 = _pairs(rows, row_ok, c + cols, block_size, n)
            v0 = _load_v(x_ptr, r_ptr, offs0, m0, HAS_RES)
            v1 = _load_v(x_ptr, r_ptr, offs0 + 1, m1, HAS_RES)
            byte_offs = rows[:, None] * block_size + c + cols
            _pair_store(
                v0, v1, offs0, m0, m1, first0, first1, scale_a, scale_b, inv_a, inv_b, byte_offs, q_ptr, r_ptr,
                QMAX, HAS_RES, USE_RINT,
            )  # fmt: skip


@triton.jit
def _dequantize8_kernel(acc_ptr, q_ptr, s_ptr, n, block_size, weight, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    q = tl.load(q_ptr + offs, mask=mask, other=0).to(tl.float32)
    s = tl.load(s_ptr + offs // block_size, mask=mask, other=0.0)
    acc = tl.load(acc_ptr + offs, mask=mask, other=0.0)
    tl.store(acc_ptr + offs, acc + weight * (q * s), mask=mask)


@triton.jit
def _dequantize4_kernel(acc_ptr, q_ptr, s_ptr, n, block_size, weight, BLOCK: tl.constexpr):
    pairs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    offs0 = 2 * pairs
    m0 = offs0 < n
    m1 = offs0 + 1 < n
    byte = tl.load(q_ptr + pairs, mask=m0, other=0x88).to(tl.int32)
    q0 = ((byte & 0x0F) - 8).to(tl.float32)
    q1 = ((byte >> 4) - 8).to(tl.float32)
    s0 = tl.load(s_ptr + offs0 // block_size, mask=m0, other=0.0)
    s1 = tl.load(s_ptr + (offs0 + 1) // block_size, mask=m1, other=0.0)
    acc0 = tl.load(acc_ptr + offs0, mask=m0, other=0.0)
    acc1 = tl.load(acc_ptr + offs0 + 1, mask=m1, other=0.0)
    tl.store(acc_ptr + offs0, acc0 + weight * (q0 * s0), mask=m0)
    tl.store(acc_ptr + offs0 + 1, acc1 + weight * (q1 * s1), mask=m1)


def _tile(device: torch.device) -> int:
    return GPU_TILE if device.type == "cuda" else INTERPRETER_TILE


@torch.no_grad()
def blockwise_quantize_triton(
    x: torch.Tensor, block_size: int, bits: int, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton version of ``swarmnet.kernels.blockwise.blockwise_quantize`` (same arguments, results, effects)."""
    qmax = check_quantize_args(x, block_size, bits, residual)
    src = x.reshape(-1)
    n = src.numel()
    n_blocks = -(-n // block_size)
    values = torch.empty(values_numel(n, bits), dtype=torch.int8 if bits == 8 else torch.uint8, device=x.device)
    scales = torch.empty(n_blocks, dtype=torch.float32, device=x.device)
    if not n:
        return values, scales  # a zero-sized grid is an error in Triton
    # 8 bits: a row is a block of block_size elements; 4 bits: two blocks, block_size pairs (tile in pairs).
    tile = _tile(x.device) // (1 if bits == 8 else 2)
    cols = min(triton.next_power_of_2(block_size), tile)
    rows = max(1, tile // cols)
    n_rows = n_blocks if bits == 8 else -(-n_blocks // 2)
    kernel = _quantize8_kernel if bits == 8 else _quantize4_kernel
    # Under the interpreter the kernels run on numpy, which warns (an error under pytest) on 1 / 0 = inf; that
    # inf is intended (the zero block's inverse, clamped), and the GPU does the same silently.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        kernel[(triton.cdiv(n_rows, rows),)](
            src,
            src if residual is None else residual,  # never read without HAS_RES
            values,
            scales,
            n,
            block_size,
            n_blocks,
            QMAX=qmax,
            ROWS=rows,
            COLS=cols,
            SINGLE=block_size <= cols,
            HAS_RES=residual is not None,
            USE_RINT=x.device.type != "cpu",
            num_warps=_NUM_WARPS,
            enable_fp_fusion=False,  # v - q * scale rounds twice, as the reference does: no FMA
        )
    return values, scales


@torch.no_grad()
def blockwise_dequantize_accumulate_triton(
    acc: torch.Tensor,
    values: torch.Tensor,
    scales: torch.Tensor,
    block_size: int,
    bits: int,
    weight: float = 1.0,
) -> None:
    """Triton version of ``swarmnet.kernels.blockwise.blockwise_dequantize_accumulate`` (same effects)."""
    check_dequantize_args(acc, values, scales, block_size, bits)
    n = acc.numel()
    if not n:
        return
    block = _tile(acc.device) // (1 if bits == 8 else 2)
    kernel = _dequantize8_kernel if bits == 8 else _dequantize4_kernel
    with np.errstate(over="ignore", invalid="ignore"):
        kernel[(triton.cdiv(values.numel(), block),)](
            acc,
            values.reshape(-1).contiguous(),
            scales.reshape(-1).contiguous(),
            n,
            block_size,
            float(weight),
            BLOCK=block,
            num_warps=_NUM_WARPS,
            enable_fp_fusion=False,  # also silences Triton's warning about the default
        )
