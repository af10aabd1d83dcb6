"""Triton version of ``lora_linear``: one tiled matmul kernel that fuses the adapter and the bias.

Each program owns one ``[BLOCK_M, BLOCK_N]`` tile of ``y``. Walking ``in`` in steps of ``BLOCK_K``, it loads
the ``x`` tile once and feeds it to two ``tl.dot``s: the base product ``x W^T`` and the low-rank one
``x A^T`` (``[BLOCK_M, BLOCK_R]``, the rank padded to a power of two >= 16 as ``tl.dot`` requires). After
the loop it adds ``scale * low B^T`` and the bias and stores the tile once. The low-rank product is
recomputed by every column of tiles: ``r / BLOCK_N`` extra work (a few percent), against a second kernel
launch and a round trip of ``low`` through memory.

Accumulation is fp32 for every input dtype. For fp32 inputs the products use TF32 tensor cores only when
``torch.backends.cuda.matmul.allow_tf32`` is set (torch's own rule for fp32 matmuls), else exact fp32.
Triton 3.9's interpreter multiplies bf16 tiles in ``tl.dot`` as if their bit patterns were integers, so
under ``TRITON_INTERPRET=1`` (CPU tensors) bf16 tiles are widened to fp32 before each ``tl.dot``; on CUDA
they go to the tensor cores as they are.

Autograd: ``lora_linear_triton`` is a ``torch.autograd.Function``; its backward is the reference's
gradient in torch matmuls (``x2 = x`` as rows, ``dy`` the output gradient, ``low = x2 A^T``)::

    dx = dy W + scale * (dy B) A        dW = dy^T x2        dbias = sum of dy over rows
    dA = scale * (dy B)^T x2            dB = scale * dy^T low

each computed only for the inputs that need it (a frozen ``weight`` costs nothing).

Imported only through ``swarmnet.kernels.lora.DISPATCH`` (importing triton is slow).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import triton
import triton.language as tl

from swarmnet.kernels.lora import check_shapes

__all__ = ["lora_linear_triton"]


@triton.jit
def _lora_linear_kernel(
    x_ptr,
    w_ptr,
    a_ptr,
    b_ptr,
    bias_ptr,
    y_ptr,
    m,
    n,
    k,
    rank,
    scale,
    stride_xm,
    stride_xk,
    stride_wn,
    stride_wk,
    stride_ar,
    stride_ak,
    stride_bn,
    stride_br,
    stride_ym,
    stride_yn,
    HAS_BIAS: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    # int64 row offsets: tokens * in may pass 2**31 for long sequences of a wide layer.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ranks = tl.arange(0, BLOCK_R)
    row_ok, col_ok, rank_ok = rows < m, cols < n, ranks < rank
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    low = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < k
        # Masked lanes load zeros, which add nothing to either product.
        x = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :] * stride_xk, row_ok[:, None] & k_ok[None, :], 0.0)
        w_t = tl.load(
            w_ptr + ks[:, None] * stride_wk + cols[None, :] * stride_wn, k_ok[:, None] & col_ok[None, :], 0.0
        )
        a_t = tl.load(
            a_ptr + ks[:, None] * stride_ak + ranks[None, :] * stride_ar, k_ok[:, None] & rank_ok[None, :], 0.0
        )
        if UPCAST:
            x, w_t, a_t = x.to(tl.float32), w_t.to(tl.float32), a_t.to(tl.float32)
        acc = tl.dot(x, w_t, acc, input_precision=PRECISION)
        low = tl.dot(x, a_t, low, input_precision=PRECISION)
    b_t = tl.load(
        b_ptr + ranks[:, None] * stride_br + cols[None, :] * stride_bn, rank_ok[:, None] & col_ok[None, :], 0.0
    )
    acc = tl.dot(low * scale, b_t.to(tl.float32), acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, col_ok, 0.0).to(tl.float32)[None, :]
    y_mask = row_ok[:, None] & col_ok[None, :]
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :] * stride_yn, acc.to(y_ptr.dtype.element_ty), y_mask)


def _block(size: int, largest: int) -> int:
    """A power-of-two tile edge: at least 16 (``tl.dot``'s minimum), at most ``largest``, no larger than
    the dimension needs (under the interpreter every program costs milliseconds, so small inputs get few)."""
    return max(16, min(largest, int(triton.next_power_of_2(max(size, 1)))))


def _forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])  # strides go to the kernel, so any 2-D layout works
    (m, k), (n, r) = rows.shape, lora_b.shape
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m and n:
        exact = x.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
        block_m, block_n, block_k = _block(m, 64), _block(n, 64), _block(k, 32)
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
        _lora_linear_kernel[grid](
            rows,
            weight,
            lora_a,
            lora_b,
            bias if bias is not None else y,  # never read without HAS_BIAS
            y,
            m,
            n,
            k,
            r,
            float(scale),
            *rows.stride(),
            *weight.stride(),
            *lora_a.stride(),
            *lora_b.stride(),
            *y.stride(),
            HAS_BIAS=bias is not None,
            PRECISION="ieee" if exact else "tf32",
            UPCAST=x.dtype == torch.bfloat16 and x.device.type == "cpu",
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            BLOCK_R=_block(r, 128),
            num_warps=4,
            num_stages=3,
            enable_fp_fusion=True,  # explicit: fused multiply-adds are fine in a matmul epilogue
        )
    return y.view(*x.shape[:-1], n)


class _LoRALinearFunction(torch.autograd.Function):
    """The fused forward with the reference's gradients (see the module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scale: float,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight, lora_a, lora_b)
        ctx.scale, ctx.has_bias = scale, bias is not None
        return _forward(x, weight, lora_a, lora_b, scale, bias)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, lora_a, lora_b = ctx.saved_tensors
        need_x, need_w, need_a, need_b, _, need_bias = ctx.needs_input_grad
        scale: float = ctx.scale
        rows, dy = x.reshape(-1, x.shape[-1]), grad_y.reshape(-1, weight.shape[0])
        dy_b = dy @ lora_b if need_x or need_a else None  # [tokens, r], shared by dx and dA
        grad_x = grad_w = grad_a = grad_b = grad_bias = None
        if need_x:
            assert dy_b is not None
            grad_x = torch.addmm(dy @ weight, dy_b, lora_a, alpha=scale).view(x.shape)
        if need_w:
            grad_w = dy.T @ rows
        if need_a:
            assert dy_b is not None
            grad_a = (dy_b.T @ rows).mul_(scale)
        if need_b:
            grad_b = (dy.T @ (rows @ lora_a.T)).mul_(scale)
        if need_bias and ctx.has_bias:
            grad_bias = dy.sum(0)
        return grad_x, grad_w, grad_a, grad_b, None, grad_bias


def lora_linear_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Triton version of ``swarmnet.kernels.lora.lora_linear`` (same arguments and result; differentiable)."""
    check_shapes(x, weight, lora_a, lora_b, bias)
    result = _LoRALinearFunction.apply(x, weight, lora_a, lora_b, scale, bias)  # type: ignore[no-untyped-call]
    return cast(torch.Tensor, result)
