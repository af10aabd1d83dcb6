"""Triton version of ``outer_nesterov``: one program per block of elements, everything in registers.

Imported only through ``swarmnet.kernels.nesterov.DISPATCH`` (importing triton costs seconds).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from swarmnet.kernels.nesterov import check_buffers

__all__ = ["BLOCK", "outer_nesterov_triton"]

# Elements per program. 4096 fp32 with 8 warps is 16 elements per thread: enough loads in flight to saturate
# HBM; under TRITON_INTERPRET=1 each program costs milliseconds, so tests keep their sizes to a few blocks.
BLOCK = 4096


@triton.jit
def _outer_nesterov_kernel(global_ptr, local_ptr, buf_ptr, numel, lr, momentum, BLOCK: tl.constexpr):
    # int64 offsets: buffers of more than 2**31 elements (8 GB) are plausible for a large model.
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < numel
    p = tl.load(global_ptr + offsets, mask=mask)
    q = tl.load(local_ptr + offsets, mask=mask)
    m = tl.load(buf_ptr + offsets, mask=mask)
    g = p - q
    m = momentum * m + g
    p = p - lr * (g + momentum * m)
    tl.store(buf_ptr + offsets, m, mask=mask)
    tl.store(global_ptr + offsets, p, mask=mask)
    tl.store(local_ptr + offsets, p, mask=mask)


@torch.no_grad()
def outer_nesterov_triton(
    global_params: torch.Tensor, local_params: torch.Tensor, momentum_buf: torch.Tensor, lr: float, momentum: float
) -> None:
    """Triton version of ``swarmnet.kernels.nesterov.outer_nesterov`` (same arguments and effects)."""
    check_buffers(global_params, local_params, momentum_buf)
    numel = global_params.numel()
    if not numel:
        return  # a zero-sized grid is an error in Triton
    grid = (triton.cdiv(numel, BLOCK),)
    _outer_nesterov_kernel[grid](
        global_params,
        local_params,
        momentum_buf,
        numel,
        float(lr),
        float(momentum),
        BLOCK=BLOCK,
        num_warps=8,
        enable_fp_fusion=False,  # round m and the update as the reference does: no FMA
    )
