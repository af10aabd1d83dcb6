"""Local training on the client's own data: the adapter is the model's trainable parameters.

With peft, the trainable parameters are exactly the LoRA matrices (plus any ``modules_to_save``,
such as a classification head), so the same code federates a peft model or any torch module
whose frozen parts were frozen by hand. Each round also counts the examples its batches held
(``batch_samples``): the FedAvg weight of a client whose loader has no size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from swarmnet.federated.vector import AdapterSchema

__all__ = ["LocalRound", "LocalTrainer", "StepFn", "batch_samples", "default_step"]

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


def batch_samples(batch: Any) -> int | None:
    """How many examples ``batch`` holds, or ``None`` when its layout says nothing about it.

    Hugging Face dicts count their ``labels`` (else their first tensor's rows), ``(inputs, targets)``
    pairs their targets' rows, a bare tensor its rows.
    """
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else None
    if isinstance(batch, Mapping):
        labels = batch.get("labels")
        if isinstance(labels, torch.Tensor) and labels.dim() > 0:
            return int(labels.shape[0])
        return next((n for value in batch.values() if (n := batch_samples(value)) is not None), None)
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes) and batch:
        return batch_samples(batch[-1]) or batch_samples(batch[0])
    return None


@dataclass(frozen=True)
class LocalRound:
    """What one round of local training did."""

    loss: float  # mean over the steps
    samples: int | None  # examples in the batches trained on; None when a batch could not be counted


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

    def train(self, steps: int, learning_rate: float) -> LocalRound:
        """Run ``steps`` AdamW steps (a fresh optimizer: FedAvg rounds start clean): mean loss, examples seen."""
        optimizer = torch.optim.AdamW(self.parameters.values(), lr=learning_rate, weight_decay=0.0)
        self.model.train()
        total = 0.0
        samples: int | None = 0
        for _ in range(steps):
            batch = self._next_batch()
            counted = batch_samples(batch)
            samples = None if samples is None or counted is None else samples + counted
            loss = self._step(self.model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"local training diverged: loss {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.detach())
        return LocalRound(total / steps if steps else math.nan, samples)

    def _next_batch(self) -> Any:
        for _ in range(2):
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = iter(self._loader)  # a new epoch
        raise ValueError("the training loader yields no batches")
