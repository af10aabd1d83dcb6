"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the deltas, added with a server SGD step."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from swarmnet.averaging import robust
from swarmnet.coordinator.strategies.base import (
    ClientUpdate,
    ServerState,
    StrategyConfig,
    check_step_inputs,
    stack_updates,
)

__all__ = ["sgd_step", "weighted_mean"]


def weighted_mean(updates: Sequence[ClientUpdate]) -> torch.Tensor:
    """``sum_i w_i delta_i / sum_i w_i``, accumulated in float64, as float32.

    ``w_i`` is client ``i``'s claimed samples, capped at twice the round's median claim (``weights.py``).

    Raises ``ValueError`` for invalid updates (see ``check_updates``).
    """
    deltas, samples = stack_updates(updates)
    return robust.aggregate(deltas, samples, robust.AggregationConfig(rule="mean"))


def sgd_step(
    params: torch.Tensor, aggregate: torch.Tensor, state: ServerState, config: StrategyConfig
) -> tuple[torch.Tensor, ServerState]:
    """``params + server_lr * aggregate`` as a new tensor; ``server_lr = 1`` is exactly FedAvg.

    The state's tensors pass through untouched (plain SGD keeps no moments); its step counts up.
    """
    config.validate()
    check_step_inputs(params, aggregate, state)
    # alpha=1 multiplies by one exactly, so FedAvg's new params are the float32 sum params + aggregate.
    new_params = torch.add(params, aggregate, alpha=config.server_lr)
    return new_params, ServerState(step=state.step + 1, tensors=dict(state.tensors))
