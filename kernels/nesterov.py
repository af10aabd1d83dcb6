"""The DiLoCo outer step: Nesterov momentum on the pseudo-gradient, in place, in one pass over memory.

After a round of inner steps every replica holds its own local parameters; the caller averages them into
``local_params`` and this kernel moves the global parameters, for every element ``i`` (fp32 throughout)::

    g          = global[i] - local[i]              # the (averaged) pseudo-gradient
    m[i]       = momentum * m[i] + g               # momentum buffer, dampening 0
    update     = g + momentum * m[i]               # Nesterov look-ahead
    global[i]  = global[i] - lr * update
    local[i]   = global[i]                         # every replica starts the next round from here

which is ``torch.optim.SGD(lr=lr, momentum=momentum, nesterov=True)`` stepped on ``global.grad = global -
local``, then ``local.copy_(global)``: DiLoCo's outer optimizer (Douillard et al., 2023).

The obvious version (``outer_nesterov_reference``) makes about sixteen full-size passes through memory
and allocates two full-size temporaries (their page faults alone cost as much as the arithmetic). The CPU
path walks the buffers in chunks of ``CHUNK_ELEMENTS`` with one reused scratch chunk, so each element is
read once from memory and written once (3 reads + 3 writes, the minimum) and the five arithmetic passes
run in cache. The Triton path does the same in registers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from swarmnet.kernels.dispatch import Dispatch, select_backend
from swarmnet.kernels.threads import parallel_map, spans

__all__ = [
    "CHUNK_ELEMENTS",
    "DISPATCH",
    "check_buffers",
    "outer_nesterov",
    "outer_nesterov_cpu",
    "outer_nesterov_reference",
]

# 512K fp32 elements = 2 MB per buffer chunk (four chunks live at once: global, local, momentum, scratch).
# Smaller chunks pay the per-call overhead of the five torch ops per chunk; larger ones spill out of the
# cache (this size ran fastest at 25M elements).
CHUNK_ELEMENTS = 1 << 19

OuterNesterov = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], None]


def check_buffers(global_params: torch.Tensor, local_params: torch.Tensor, momentum_buf: torch.Tensor) -> None:
    """``ValueError`` unless the three buffers are contiguous, of equal numel, and distinct memory.

    Contiguity is what lets every path treat them as flat arrays; overlapping buffers would make the
    in-place updates read values already overwritten.
    """
    numels = {t.numel() for t in (global_params, local_params, momentum_buf)}
    if len(numels) != 1:
        raise ValueError(
            f"outer_nesterov buffers must have equal numel, got {global_params.numel()}, "
            f"{local_params.numel()}, {momentum_buf.numel()}"
        )
    if not all(t.is_contiguous() for t in (global_params, local_params, momentum_buf)):
        raise ValueError("outer_nesterov buffers must be contiguous")
    if numels.pop() and global_params.device.type != "meta":
        pointers = {t.data_ptr() for t in (global_params, local_params, momentum_buf)}
        if len(pointers) != 3:
            raise ValueError("outer_nesterov buffers must not share memory")


@torch.no_grad()
def outer_nesterov_reference(
    global_params: torch.Tensor, local_params: torch.Tensor, momentum_buf: torch.Tensor, lr: float, momentum: float
) -> None:
    """Plain PyTorch, the definition of correct (same arguments and effects as ``outer_nesterov``)."""
    check_buffers(global_params, local_params, momentum_buf)
    pseudo_grad = global_params - local_params
    momentum_buf.mul_(momentum).add_(pseudo_grad)
    update = pseudo_grad.add(momentum_buf, alpha=momentum)
    global_params.sub_(update, alpha=lr)
    local_params.copy_(global_params)


@torch.no_grad()
def outer_nesterov_cpu(
    global_params: torch.Tensor, local_params: torch.Tensor, momentum_buf: torch.Tensor, lr: float, momentum: float
) -> None:
    """Chunked CPU version of ``outer_nesterov``: one read and one write of each buffer; chunks run in parallel."""
    check_buffers(global_params, local_params, momentum_buf)
    p, q, m = global_params.view(-1), local_params.view(-1), momentum_buf.view(-1)

    def step(span: tuple[int, int]) -> None:
        start, stop = span
        pc, qc, mc, g = p[start:stop], q[start:stop], m[start:stop], torch.empty(stop - start)
        torch.sub(pc, qc, out=g)  # g = global - local
        torch.add(g, mc, alpha=momentum, out=mc)  # m = g + momentum * m
        g.add_(mc, alpha=momentum)  # update = g + momentum * m
        pc.sub_(g, alpha=lr)
        qc.copy_(pc)

    parallel_map(step, spans(p.numel(), size=CHUNK_ELEMENTS))


def _load_triton() -> OuterNesterov:
    from swarmnet.kernels.triton_nesterov import outer_nesterov_triton

    return outer_nesterov_triton


DISPATCH: Dispatch[OuterNesterov] = Dispatch(
    "outer_nesterov", reference=outer_nesterov_reference, cpu=outer_nesterov_cpu, load_triton=_load_triton
)


def outer_nesterov(
    global_params: torch.Tensor, local_params: torch.Tensor, momentum_buf: torch.Tensor, lr: float, momentum: float
) -> None:
    """DiLoCo outer step with Nesterov momentum, all three buffers updated in place; returns nothing.

    Args:
        global_params: the global parameters before the round, fp32, contiguous, any shape; becomes
            ``global - lr * (g + momentum * m_new)`` with ``g = global - local``.
        local_params: the replicas' averaged parameters after the round (same numel, contiguous, fp32);
            becomes a copy of the new ``global_params``.
        momentum_buf: the outer momentum (same numel, contiguous, fp32; zeros before the first round);
            becomes ``momentum * m + g``.
        lr: outer learning rate.
        momentum: outer momentum coefficient (Nesterov, dampening 0).

    The math is exactly ``torch.optim.SGD(lr=lr, momentum=momentum, nesterov=True)`` stepped on the
    pseudo-gradient ``global - local`` (see the module docstring); the paths differ only by fp32 rounding
    (fused multiply-adds). No autograd: the buffers are updated under ``torch.no_grad()``.

    Raises:
        KernelError: a dtype other than fp32, buffers on several devices, or a device no backend serves.
        ValueError: unequal numel, non-contiguous or overlapping buffers.
    """
    backend = select_backend(global_params, local_params, momentum_buf)
    DISPATCH.impl(backend)(global_params, local_params, momentum_buf, lr, momentum)
