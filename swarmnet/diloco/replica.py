"""One DiLoCo replica's math, without any networking: inner steps, pseudo-gradients, outer steps.

The swarm trainer and the single-process experiment both drive this class, so the optimizer
arithmetic they measure is the same. A replica holds

* ``flat.vector``: its live (local) parameters, which AdamW moves every inner step;
* ``global_params``: the parameters every replica agreed on after the last sync (fp32 copy);
* ``momentum``: the outer Nesterov momentum (identical on every replica, like ``global_params``);
* ``step``: inner steps done so far, which is also the data cursor and the schedule position.

A sync of fragment ``p`` (the whole vector when not streaming) takes ``pseudo_gradient(p)``
(global minus local), averages it across replicas (someone else's job), and hands the average to
``apply_outer(p, average)``: one Nesterov step on the global fragment, then the local fragment is
reset to the new global one (or mixed with it, Streaming DiLoCo's ``mixing``).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from swarmnet.data.text import Batch
from swarmnet.diloco.config import DiLoCoConfig
from swarmnet.diloco.flat import FlatParameters
from swarmnet.kernels.nesterov import outer_nesterov

__all__ = ["Replica"]


class Replica:
    """A model, its inner AdamW, and the DiLoCo global state; ``loss_fn(model, batch)`` gives the loss."""

    def __init__(self, model: nn.Module, config: DiLoCoConfig) -> None:
        config.validate()
        self.model, self.config = model, config
        self.flat = FlatParameters(model, config.fragments)
        self.global_params = self.flat.vector.clone()
        self.momentum = torch.zeros_like(self.global_params)
        self.step = 0
        self.rounds = 0  # completed syncs (fragment syncs when streaming)
        self.optimizer = _adamw(model, config)

    def inner_step(self, batch: Batch) -> float:
        """One AdamW step on ``batch`` at the scheduled learning rate; returns the loss before the step."""
        self.model.train()
        lr = self.config.inner.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.model.loss(*batch)  # type: ignore[operator]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.inner.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.inner.grad_clip)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def pseudo_gradient(self, fragment: int = 0) -> torch.Tensor:
        """Global minus local parameters of ``fragment`` (a new tensor: safe to hand to another thread)."""
        part = self.flat.slices[fragment]
        return self.global_params[part] - self.flat.vector[part]

    @torch.no_grad()
    def apply_outer(self, average: torch.Tensor, fragment: int = 0, *, mixing: float | None = None) -> None:
        """Outer Nesterov step of ``fragment`` with the averaged pseudo-gradient, then merge into local.

        ``mixing`` (default ``config.mixing``) is the share of the local fragment kept: 0 resets it to the
        new global fragment (DiLoCo); Streaming DiLoCo keeps some of the steps taken during the exchange.
        """
        part = self.flat.slices[fragment]
        global_part, momentum = self.global_params[part], self.momentum[part]
        if average.shape != global_part.shape:
            raise ValueError(f"average of {average.numel()} values for a fragment of {global_part.numel()}")
        target = global_part - average  # the averaged local parameters the kernel expects
        outer_nesterov(global_part, target, momentum, self.config.outer.lr, self.config.outer.momentum)
        keep = self.config.mixing if mixing is None else mixing
        local = self.flat.vector[part]
        if keep == 0:
            local.copy_(global_part)
        else:
            local.mul_(keep).add_(global_part, alpha=1 - keep)
        self.rounds += 1

    def load_global(self, global_params: torch.Tensor, momentum: torch.Tensor, step: int, rounds: int) -> None:
        """Adopt a global state fetched from the swarm (or a checkpoint): local = global."""
        with torch.no_grad():
            self.global_params.copy_(global_params)
            self.momentum.copy_(momentum)
            self.flat.vector.copy_(global_params)
        self.step, self.rounds = step, rounds

    def state_digest(self) -> str:
        """SHA-256 of the global state (parameters, momentum, step): equal on every synced replica."""
        digest = hashlib.sha256(f"{self.step}:{self.rounds}:".encode())
        digest.update(self.global_params.numpy().tobytes())
        digest.update(self.momentum.numpy().tobytes())
        return digest.hexdigest()

    @torch.no_grad()
    def evaluate(self, batches: list[Batch], *, use_global: bool = True) -> float:
        """Mean loss over ``batches`` with the global (default) or local parameters."""
        saved = self.flat.vector.clone() if use_global else None
        if saved is not None:
            self.flat.vector.copy_(self.global_params)
        self.model.eval()
        try:
            losses = [float(self.model.loss(*batch)) for batch in batches]  # type: ignore[operator]
        finally:
            if saved is not None:
                self.flat.vector.copy_(saved)
        return sum(losses) / len(losses)


def _adamw(model: nn.Module, config: DiLoCoConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.inner.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.inner.lr, betas=config.inner.betas)
