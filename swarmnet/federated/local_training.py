"""Local training on the client's own data: the adapter is the model's trainable parameters.

With peft, the trainable parameters are exactly the LoRA matrices (plus any ``modules_to_save``,
such as a classification head), so the same code federates a peft model or any torch module
whose frozen parts were frozen by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from swarmnet.federated.vector import AdapterSchema

__all__ = ["LocalTrainer", "StepFn", "default_step"]

StepFn = Callable[[nn.Module, Any], torch.Tensor]


def default_step(model: nn.Module, batch: Any) -> torch.Tensor:
    """The loss of one batch: Hugging Face style dicts (``labels`` inside) or ``(inputs, targets)`` pairs."""
    if isinstance(batch, Mapping):
        loss = model(**batch).loss
        if loss is None:
            raise ValueError("the model returned no loss: does the batch dict carry 'labels'?")
        return loss  # type: ignore[no-any-return]
    inputs, targets = batch
    return nn.functional.cross_entropy(model(inputs), targets)


class LocalTrainer:
    """Trains a model's trainable parameters for a number of steps on an endless pass over ``loader``."""

    def __init__(self, model: nn.Module, loader: Iterable[Any], step: StepFn = default_step) -> None:
        self.model = model
        self._loader = loader
        self._step = step
        self._batches: Iterator[Any] = iter(())
        self.parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not self.parameters:
            raise ValueError("the model has no trainable parameters: wrap it with LoRA or unfreeze the adapter")
        self.schema = AdapterSchema.of({name: p.detach() for name, p in self.parameters.items()})

    def vector(self) -> torch.Tensor:
        """The adapter as a flat float32 vector (a copy)."""
        return self.schema.flatten({name: p.detach() for name, p in self.parameters.items()})

    def load(self, vector: torch.Tensor) -> None:
        """Set the adapter from a flat vector."""
        with torch.no_grad():
            for name, value in self.schema.unflatten(vector).items():
                self.parameters[name].copy_(value)

    def train(self, steps: int, learning_rate: float) -> float:
        """Run ``steps`` AdamW steps (a fresh optimizer: FedAvg rounds start clean); return the mean loss."""
        optimizer = torch.optim.AdamW(self.parameters.values(), lr=learning_rate, weight_decay=0.0)
        self.model.train()
        total = 0.0
        for _ in range(steps):
            loss = self._step(self.model, self._next_batch())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"local training diverged: loss {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.detach())
        return total / steps if steps else math.nan

    def _next_batch(self) -> Any:
        for _ in range(2):
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = iter(self._loader)  # a new epoch
        raise ValueError("the training loader yields no batches")
