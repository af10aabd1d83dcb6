"""A model's parameters as views of one contiguous fp32 vector, cut into equal fragments.

DiLoCo works on whole-model vectors (global copy, momentum, pseudo-gradient); keeping the live
parameters as views of one buffer makes each of those a single tensor op and lets a fragment be a
plain slice. Parameters are laid out in strided layer order (``blocks.0, blocks.P, ...``), so the
equal slices that make fragments roughly follow Streaming DiLoCo's strided layer pattern while
every fragment has exactly the same size (peak bytes per sync = total / P).
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["FlatParameters"]

_BLOCK = re.compile(r"(?:^|\.)(\d+)\.")


class FlatParameters:
    """Rebinds ``model``'s parameters to views of ``self.vector`` (fp32, contiguous)."""

    def __init__(self, model: nn.Module, fragments: int = 1) -> None:
        named = list(model.named_parameters())
        if not named or any(p.dtype != torch.float32 for _, p in named):
            raise ValueError("FlatParameters needs a model with fp32 parameters")
        order = sorted(range(len(named)), key=lambda i: _layout_key(named[i][0], i, fragments))
        self.names = [named[i][0] for i in order]
        self.numel = sum(p.numel() for _, p in named)
        self.vector = torch.empty(self.numel, dtype=torch.float32)
        offset = 0
        with torch.no_grad():
            for i in order:
                parameter = named[i][1]
                view = self.vector[offset : offset + parameter.numel()].view_as(parameter)
                view.copy_(parameter)
                parameter.data = view
                offset += parameter.numel()
        self.fragments = fragments
        bounds = [round(p * self.numel / fragments) for p in range(fragments + 1)]
        self.slices = [slice(bounds[p], bounds[p + 1]) for p in range(fragments)]

    def fragment(self, index: int) -> torch.Tensor:
        """The live parameters of fragment ``index`` (a view)."""
        return self.vector[self.slices[index]]


def _layout_key(name: str, index: int, fragments: int) -> tuple[int, int, int]:
    """Parameters outside numbered blocks first, then blocks in strided order (``i % P == 0`` first, ...)."""
    match = _BLOCK.search(name)
    if match is None:
        return (0, 0, index)
    return (1, int(match.group(1)) % fragments, index)
