"""Triton versions of ``ef_sign_encode`` and ``sign_decode_accumulate`` (the math is in ``sign.py``).

Encode, when ``chunk_size`` is a multiple of 8 of at most ``FUSED_MAX_CHUNK`` elements (8, 64, 4096, ...): one
program per group of whole chunks, laid out as a ``[rows, next_pow2(chunk)]`` tile in registers. It reads
``grad`` and ``residual`` once, sums ``|v|`` per row (in fp64, so no chunk can overflow), packs each run of 8
sign bits into a byte, and writes the bytes, the scales and the residual: one pass over memory. Every chunk
starts on a byte boundary, so programs never share a byte.

Other chunk sizes (not a multiple of 8: a byte may span two chunks; or too long for registers): two kernels.
The first sums ``|grad + residual|`` per chunk, looping over long chunks in tiles; the second recomputes ``v``
per block of whole bytes, reads each element's scale, and writes bits and residual. That reads ``grad`` and
``residual`` twice.

Decode-accumulate: one program per block of whole bytes; each element shifts its bit out of its byte and reads
its chunk's scale (neighbouring elements share both, so those loads hit the cache).

Imported only through ``swarmnet.kernels.sign`` (importing triton costs seconds).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from swarmnet.kernels.sign import check_decode, check_encode

__all__ = ["ELEMENTS_PER_PROGRAM", "FUSED_MAX_CHUNK", "ef_sign_encode_triton", "sign_decode_accumulate_triton"]

# Elements per program on a GPU: 4096 fp32 with 8 warps is 16 per thread, enough loads in flight to saturate
# HBM. Under TRITON_INTERPRET=1 every program costs milliseconds of Python, so programs there are larger.
ELEMENTS_PER_PROGRAM = 4096
INTERPRETER_ELEMENTS_PER_PROGRAM = 1 << 14
# The longest chunk the fused encode keeps in registers as one tile (16 fp32 + 16 fp64 per thread, 8 warps).
FUSED_MAX_CHUNK = 4096
_NUM_WARPS = 8


def _per_program() -> int:
    return INTERPRETER_ELEMENTS_PER_PROGRAM if os.environ.get("TRITON_INTERPRET") == "1" else ELEMENTS_PER_PROGRAM


@triton.jit
def _pack_bytes(positive, ROWS: tl.constexpr, COLS: tl.constexpr):
    # [ROWS, COLS] of 0/1 -> [ROWS, COLS // 8] bytes, first element in the most significant bit.
    grouped = tl.reshape(positive, (ROWS, COLS // 8, 8))
    shifts = 7 - tl.arange(0, 8)
    return tl.sum(grouped << shifts[None, None, :], axis=2).to(tl.uint8)


@triton.jit
def _encode_fused_kernel(
    grad_ptr,
    residual_ptr,
    bits_ptr,
    scales_ptr,
    numel,
    chunk,
    n_chunks,
    n_bytes,
    ROWS: tl.constexpr,
    COLS: tl.constexpr,  # (next_pow2(chunk), a multiple of 8)
):
    # int64 offsets: tensors of more than 2**31 elements are plausible for a large model.
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, COLS)
    offsets = rows[:, None] * chunk + cols[None, :]
    mask = (cols[None, :] < chunk) & (offsets < numel)
    v = tl.load(grad_ptr + offsets, mask=mask, other=0.0) + tl.load(residual_ptr + offsets, mask=mask, other=0.0)
    total = tl.sum(tl.abs(v).to(tl.float64), axis=1)  # masked lanes hold 0
    count = tl.maximum(tl.minimum(numel - rows * chunk, chunk), 1)  # real elements; 1 keeps unused rows finite
    scale = (total / count).to(tl.float32)
    tl.store(scales_ptr + rows, scale, mask=rows < n_chunks)
    positive = v >= 0
    decoded = tl.where(positive, scale[:, None], -scale[:, None])
    tl.store(residual_ptr + offsets, v - decoded, mask=mask)
    # Lanes past the end give 0 bits, so the unused bits of the last byte are zero.
    packed = _pack_bytes((positive & mask).to(tl.int32), ROWS, COLS)
    byte_cols = tl.arange(0, COLS // 8)
    byte_offsets = rows[:, None] * (chunk // 8) + byte_cols[None, :]
    tl.store(bits_ptr + byte_offsets, packed, mask=(byte_cols[None, :] < chunk // 8) & (byte_offsets < n_bytes))


@triton.jit
def _chunk_means_kernel(
    grad_ptr,
    residual_ptr,
    scales_ptr,
    numel,
    chunk,
    n_chunks,
    ROWS: tl.constexpr,
    COLS: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    total = tl.zeros((ROWS,), dtype=tl.float64)
    for start in range(0, chunk, COLS):  # one iteration unless the chunk is longer than a tile
        cols = start + tl.arange(0, COLS)
        offsets = rows[:, None] * chunk + cols[None, :]
        mask = (cols[None, :] < chunk) & (offsets < numel)
        v = tl.load(grad_ptr + offsets, mask=mask, other=0.0) + tl.load(residual_ptr + offsets, mask=mask, other=0.0)
        total += tl.sum(tl.abs(v).to(tl.float64), axis=1)
    count = tl.maximum(tl.minimum(numel - rows * chunk, chunk), 1)
    tl.store(scales_ptr + rows, (total / count).to(tl.float32), mask=rows < n_chunks)


@triton.jit
def _encode_with_scales_kernel(
    grad_ptr,
    residual_ptr,
    bits_ptr,
    scales_ptr,
    numel,
    chunk,
    n_bytes,
    BYTES: tl.constexpr,
):
    byte_rows = tl.program_id(0).to(tl.int64) * BYTES + tl.arange(0, BYTES)
    offsets = byte_rows[:, None] * 8 + tl.arange(0, 8)[None, :]  # [BYTES, 8]: one byte's elements per row
    mask = offsets < numel
    v = tl.load(grad_ptr + offsets, mask=mask, other=0.0) + tl.load(residual_ptr + offsets, mask=mask, other=0.0)
    scale = tl.load(scales_ptr + offsets // chunk, mask=mask, other=0.0)
    positive = v >= 0
    tl.store(residual_ptr + offsets, v - tl.where(positive, scale, -scale), mask=mask)
    packed = tl.sum((positive & mask).to(tl.int32) << (7 - tl.arange(0, 8))[None, :], axis=1).to(tl.uint8)
    tl.store(bits_ptr + byte_rows, packed, mask=byte_rows < n_bytes)


@triton.jit
def _decode_accumulate_kernel(acc_ptr, bits_ptr, scales_ptr, numel, chunk, weight, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < numel
    byte = tl.load(bits_ptr + offsets // 8, mask=mask, other=0).to(tl.int32)
    bit = (byte >> (7 - offsets % 8).to(tl.int32)) & 1
    weighted = tl.load(scales_ptr + offsets // chunk, mask=mask, other=0.0) * weight
    acc = tl.load(acc_ptr + offsets, mask=mask)
    # acc + fp32(weight * (+-scale)): negating after the product is exact, so this is the reference's rounding.
    tl.store(acc_ptr + offsets, acc + tl.where(bit != 0, weighted, -weighted), mask=mask)


@torch.no_grad()
def ef_sign_encode_triton(
    grad: torch.Tensor, residual: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton version of ``swarmnet.kernels.sign.ef_sign_encode`` (same arguments, results and effects)."""
    check_encode(grad, residual, chunk_size)
    numel = grad.numel()
    n_chunks, n_bytes = triton.cdiv(numel, chunk_size), triton.cdiv(numel, 8)
    bits = torch.empty(n_bytes, dtype=torch.uint8, device=grad.device)
    scales = torch.empty(n_chunks, dtype=torch.float32, device=grad.device)
    if not numel:
        return bits, scales  # a zero-sized grid is an error in Triton
    g, r = grad.reshape(-1).contiguous(), residual.view(-1)  # kernels index flat, unit-stride memory
    per_program = _per_program()
    cols = triton.next_power_of_2(chunk_size)
    if chunk_size % 8 == 0 and chunk_size <= FUSED_MAX_CHUNK:
        rows = max(1, per_program // cols)
        _encode_fused_kernel[(triton.cdiv(n_chunks, rows),)](
            g,
            r,
            bits,
            scales,
            numel,
            chunk_size,
            n_chunks,
            n_bytes,
            ROWS=rows,
            COLS=cols,
            num_warps=_NUM_WARPS,
            enable_fp_fusion=False,
        )
        return bits, scales
    cols = min(cols, per_program)
    rows = max(1, per_program // cols)
    _chunk_means_kernel[(triton.cdiv(n_chunks, rows),)](
        g, r, scales, numel, chunk_size, n_chunks, ROWS=rows, COLS=cols, num_warps=_NUM_WARPS, enable_fp_fusion=False
    )
    per_bytes = per_program // 8
    _encode_with_scales_kernel[(triton.cdiv(n_bytes, per_bytes),)](
        g, r, bits, scales, numel, chunk_size, n_bytes, BYTES=per_bytes, num_warps=_NUM_WARPS, enable_fp_fusion=False
    )
    return bits, scales


@torch.no_grad()
def sign_decode_accumulate_triton(
    acc: torch.Tensor, packed_bits: torch.Tensor, scales: torch.Tensor, chunk_size: int, weight: float = 1.0
) -> None:
    """Triton version of ``swarmnet.kernels.sign.sign_decode_accumulate`` (same arguments and effects)."""
    check_decode(acc, packed_bits, scales, chunk_size)
    numel = acc.numel()
    if not numel:
        return
    block = _per_program()
    _decode_accumulate_kernel[(triton.cdiv(numel, block),)](
        acc,
        packed_bits.contiguous(),
        scales.contiguous(),
        numel,
        chunk_size,
        float(weight),
        BLOCK=block,
        num_warps=_NUM_WARPS,
        enable_fp_fusion=False,  # acc + weight*s rounds twice, as the reference does: no FMA
    )
