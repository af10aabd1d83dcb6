"""A module a server hosts, and its batched forward and backward (backward recomputes the forward)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from swarmnet.remote.config import check_uid

__all__ = ["GradientHook", "HostedModule"]

GradientHook = Callable[[dict[str, torch.Tensor]], None]
"""Called with ``{parameter name: gradient}`` after each backward batch (e.g. to step an optimizer)."""


@dataclass(frozen=True)
class HostedModule:
    """A torch module served under ``uid``: ``module(*inputs)`` returns one tensor whose first dimension is
    the batch. Without ``gradient_hook`` the parameters stay frozen (no parameter gradients are computed)."""

    uid: str
    module: nn.Module
    num_inputs: int = 1
    gradient_hook: GradientHook | None = None

    def __post_init__(self) -> None:
        check_uid(self.uid)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The module's output for a batch, without building a graph."""
        with torch.no_grad():
            return self._output(self.module(*inputs))

    def backward(self, inputs: Sequence[torch.Tensor], grad_output: torch.Tensor) -> list[torch.Tensor]:
        """Recompute the forward from ``inputs`` and return the gradients of the inputs; parameter gradients
        go to the hook (if any). An input that does not affect the output gets a zero gradient."""
        leaves = [x.detach().requires_grad_(x.is_floating_point()) for x in inputs]
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        if self.gradient_hook is None:
            named = []
        with torch.enable_grad():
            output = self._output(self.module(*leaves))
            wrt = [x for x in leaves if x.requires_grad] + [p for _, p in named]
            grads = torch.autograd.grad(output, wrt, grad_output, allow_unused=True) if wrt else ()
        grad_iter = iter(grads)
        input_grads = [_or_zeros(next(grad_iter), x) if x.requires_grad else torch.zeros_like(x) for x in leaves]
        if self.gradient_hook is not None:
            self.gradient_hook({n: _or_zeros(next(grad_iter), p) for n, p in named})
        return input_grads

    def _output(self, output: object) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"hosted module {self.uid} returned {type(output).__name__}, not one tensor")
        return output


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad.detach()
