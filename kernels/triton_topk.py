"""Triton version of ``topk_threshold``: a two-phase scan that compacts the selected entries in order.

Phase 1 (one program per ``BLOCK`` entries): ``v = x + r``, written back into the residual, and the
block's count of ``|v| >= t``. The host turns the counts into each block's first output slot (an
exclusive cumulative sum of a small tensor) and allocates the outputs. Phase 2: each block re-reads
``v`` (from the residual, or from ``x`` without one), writes its hits at its slot plus the running
count of hits before them (``tl.cumsum`` of the mask), and zeroes them in the residual. Blocks keep
their order and each block its hits' order, so the indices come out ascending.

Traffic: ``x`` and ``r`` read once and ``r`` written once in phase 1, ``r`` read again in phase 2, plus
the sparse outputs; one device-to-host sync for the total count.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from swarmnet.kernels.topk import estimate_threshold, validate_arguments

__all__ = ["topk_threshold_triton"]

# Large blocks: few programs (the CPU interpreter pays milliseconds per program) and few counts to scan.
BLOCK = 4096


@triton.jit
def _count_kernel(x_ptr, r_ptr, counts_ptr, n, threshold, has_residual: tl.constexpr, block: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * block + tl.arange(0, block)  # int64: tensors may exceed 2**31 entries
    inside = offs < n
    v = tl.load(x_ptr + offs, mask=inside, other=0.0)
    if has_residual:
        v = v + tl.load(r_ptr + offs, mask=inside, other=0.0)
        tl.store(r_ptr + offs, v, mask=inside)  # phase 2 then reads v from here instead of x and r
    selected = (tl.abs(v) >= threshold) & inside  # a NaN threshold or entry compares False
    tl.store(counts_ptr + pid, tl.sum(selected.to(tl.int32), axis=0))


@triton.jit
def _compact_kernel(
    v_ptr, starts_ptr, indices_ptr, values_ptr, n, threshold, has_residual: tl.constexpr, block: tl.constexpr
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * block + tl.arange(0, block)
    inside = offs < n
    v = tl.load(v_ptr + offs, mask=inside, other=0.0)
    selected = (tl.abs(v) >= threshold) & inside
    flags = selected.to(tl.int32)
    slots = tl.load(starts_ptr + pid) + (tl.cumsum(flags, axis=0) - flags)  # exclusive prefix sum in the block
    tl.store(indices_ptr + slots, offs, mask=selected)
    tl.store(values_ptr + slots, v, mask=selected)
    if has_residual:
        tl.store(v_ptr + offs, tl.zeros_like(v), mask=selected)  # the sent part leaves the residual


def topk_threshold_triton(
    x: torch.Tensor, k: int, residual: torch.Tensor | None = None, sample_size: int = 65536, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton implementation of ``swarmnet.kernels.topk.topk_threshold`` (same signature and results)."""
    k = validate_arguments(x, k, residual, sample_size)
    threshold = estimate_threshold(x, k, sample_size, seed, residual=residual)
    flat = x.detach().reshape(-1).contiguous()
    n = flat.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=x.device), torch.zeros(0, device=x.device)
    work = None
    if residual is not None:
        # The kernels accumulate into the residual itself; a strided one is worked on as a copy.
        work = residual.detach().view(-1) if residual.is_contiguous() else residual.detach().reshape(-1).clone()
    grid = (triton.cdiv(n, BLOCK),)
    counts = torch.empty(grid[0], dtype=torch.int32, device=x.device)
    has_residual = work is not None
    _count_kernel[grid](
        flat, work if has_residual else flat, counts, n, threshold, has_residual, BLOCK, enable_fp_fusion=False
    )
    ends = torch.cumsum(counts, 0)  # int64
    total = int(ends[-1])
    indices = torch.empty(total, dtype=torch.int64, device=x.device)
    values = torch.empty(total, dtype=torch.float32, device=x.device)
    if total:
        source = work if work is not None else flat
        _compact_kernel[grid](
            source, ends - counts, indices, values, n, threshold, has_residual, BLOCK, enable_fp_fusion=False
        )
    if residual is not None and work is not None and not residual.is_contiguous():
        residual.copy_(work.view(residual.shape))
    return indices, values
