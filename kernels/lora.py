"""A linear layer with a LoRA adapter, ``y = x W^T + b + scale * (x A^T) B^T``, in one fused computation.

Layouts are ``nn.Linear``'s and peft's: ``x [..., in]``, ``weight [out, in]``, ``lora_a [r, in]``,
``lora_b [out, r]``, ``bias [out]``; ``y [..., out]``. ``scale`` is peft's ``lora_alpha / r``.

* ``lora_linear_reference`` spells the formula out: two matmuls for the adapter, a full-size scale, sum
  and bias pass over the output.
* ``lora_linear_cpu`` computes the small ``[tokens, r]`` low-rank product first, then one BLAS ``addmm``
  for ``bias + x W^T`` and an in-place rank-r ``addmm_`` of ``scale * low B^T`` onto it: no full-size
  temporaries, the output written by the GEMM and updated once (the layer is compute-bound: the aim is to
  cost no more than the bare ``x @ W.T``, and there is little to gain over the reference).
* ``lora_linear_triton`` (``triton_lora.py``) is one tiled ``tl.dot`` kernel: each output tile accumulates
  ``x W^T`` and ``x A^T`` over the same loads of ``x``, then adds ``scale * low B^T`` and the bias before
  its only store.

Autograd: the reference and CPU paths are plain differentiable torch ops. The Triton path is a
``torch.autograd.Function`` whose backward evaluates the reference's gradient formulas with torch matmuls
(see ``triton_lora.py``), so it trains too; only its forward is fused.
"""

from __future__ import annotations

from typing import Protocol

import torch

from swarmnet.errors import KernelError
from swarmnet.kernels.dispatch import Dispatch, select_backend

__all__ = ["DISPATCH", "DTYPES", "check_shapes", "lora_linear", "lora_linear_cpu", "lora_linear_reference"]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class LoRALinear(Protocol):
    """The signature every implementation shares."""

    def __call__(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scale: float,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


def check_shapes(
    x: torch.Tensor, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, bias: torch.Tensor | None
) -> None:
    """``ValueError`` unless the shapes fit together; ``KernelError`` if the floating dtypes differ."""
    if weight.dim() != 2 or lora_a.dim() != 2 or lora_b.dim() != 2 or x.dim() < 1:
        raise ValueError(
            f"lora_linear needs x [..., in], weight [out, in], lora_a [r, in], lora_b [out, r]; got x "
            f"{list(x.shape)}, weight {list(weight.shape)}, lora_a {list(lora_a.shape)}, lora_b {list(lora_b.shape)}"
        )
    (out_features, in_features), rank = weight.shape, lora_a.shape[0]
    if x.shape[-1] != in_features or lora_a.shape[1] != in_features or tuple(lora_b.shape) != (out_features, rank):
        raise ValueError(
            f"lora_linear shapes do not fit: x {list(x.shape)}, weight {list(weight.shape)} [out, in], "
            f"lora_a {list(lora_a.shape)} [r, in], lora_b {list(lora_b.shape)} [out, r]"
        )
    if bias is not None and tuple(bias.shape) != (out_features,):
        raise ValueError(f"lora_linear bias must have shape [{out_features}], got {list(bias.shape)}")
    dtypes = {t.dtype for t in (x, weight, lora_a, lora_b, bias) if t is not None}
    if len(dtypes) > 1:
        raise KernelError(f"lora_linear tensors must share one dtype, got {sorted(map(str, dtypes))}")


def lora_linear_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain PyTorch, the definition of correct (same arguments and result as ``lora_linear``)."""
    check_shapes(x, weight, lora_a, lora_b, bias)
    y = x @ weight.T + scale * ((x @ lora_a.T) @ lora_b.T)
    return y if bias is None else y + bias


def lora_linear_cpu(
    x: torch.Tensor,
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``lora_linear`` as one big ``addmm`` and two rank-r GEMMs (see the module docstring); differentiable."""
    check_shapes(x, weight, lora_a, lora_b, bias)
    rows = x.reshape(-1, x.shape[-1])  # a view for contiguous x; the 2-D form BLAS takes
    low = rows @ lora_a.T  # [tokens, r]: cheap, r is small
    # The bias rides in the big GEMM as a broadcast row (a full [tokens, out] start value is slower: BLAS
    # then reads it as an extra matrix); the rank-r update goes onto the result in place.
    y = torch.mm(rows, weight.T) if bias is None else torch.addmm(bias, rows, weight.T)
    y.addmm_(low, lora_b.T, alpha=scale)
    return y.view(*x.shape[:-1], weight.shape[0])


def _load_triton() -> LoRALinear:
    from swarmnet.kernels.triton_lora import lora_linear_triton

    return lora_linear_triton


DISPATCH: Dispatch[LoRALinear] = Dispatch(
    "lora_linear", reference=lora_linear_reference, cpu=lora_linear_cpu, load_triton=_load_triton
)


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``y = x @ weight.T + bias + scale * (x @ lora_a.T) @ lora_b.T``, a new tensor of shape ``[..., out]``.

    Args:
        x: inputs ``[..., in]``.
        weight: the frozen base weight ``[out, in]`` (``nn.Linear.weight``).
        lora_a: the adapter's down projection ``[r, in]`` (peft's ``lora_A.weight``).
        lora_b: the adapter's up projection ``[out, r]`` (peft's ``lora_B.weight``).
        scale: the adapter's scale (peft's ``lora_alpha / r``).
        bias: optional ``[out]``.

    All tensors share one dtype: fp32, fp16 or bf16 (products accumulate in fp32 on the Triton path and
    as BLAS does on the CPU). Nothing is modified in place. Gradients flow to every input that requires
    them on all paths (on the Triton path through a custom backward; see the module docstring).

    Raises:
        KernelError: another dtype, mixed dtypes, tensors on several devices or a device no backend serves.
        ValueError: shapes that do not fit together.
    """
    floats = [t for t in (x, weight, lora_a, lora_b, bias) if t is not None]
    backend = select_backend(*floats, dtypes=DTYPES)
    return DISPATCH.impl(backend)(x, weight, lora_a, lora_b, scale, bias)
