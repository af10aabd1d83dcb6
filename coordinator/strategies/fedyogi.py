"""FedYogi (Reddi et al. 2021, Algorithm 2): FedAdam with Yogi's additive second-moment update.

Per round, with ``d`` the aggregate::

    m = beta1 * m + (1 - beta1) * d
    v = v - (1 - beta2) * d^2 * sign(v - d^2)
    x = x + server_lr * m / (sqrt(v) + tau)

``v`` moves towards ``d^2`` by ``(1 - beta2) d^2``, so the step grows gradually when the aggregates
shrink (why: Zaheer et al. 2018). Starts, no bias correction and the moment names as in ``fedadam``.
"""

from __future__ import annotations

import torch

from swarmnet.coordinator.strategies.base import (
    ServerState,
    StrategyConfig,
    adaptive_params,
    check_step_inputs,
    load_moments,
)

__all__ = ["yogi_step"]


def yogi_step(
    params: torch.Tensor, aggregate: torch.Tensor, state: ServerState, config: StrategyConfig
) -> tuple[torch.Tensor, ServerState]:
    """One FedYogi server step; returns the new params and a state with the new ``m`` and ``v``.

    Raises ``ValueError`` for mismatched tensors or moments, ``ConfigError`` for an invalid config.
    """
    config.validate()
    check_step_inputs(params, aggregate, state)
    m, v = load_moments(state, params, config)
    m = config.beta1 * m + (1 - config.beta1) * aggregate
    squared = aggregate.square()
    v = v - (1 - config.beta2) * squared * torch.sign(v - squared)
    return adaptive_params(params, m, v, config), ServerState(step=state.step + 1, tensors={"m": m, "v": v})
