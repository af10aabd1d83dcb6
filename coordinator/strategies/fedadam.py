"""FedAdam (Reddi et al. 2021, Algorithm 2): Adam on the server, the aggregate as its pseudo-gradient.

Per round, with ``d`` the aggregate::

    m = beta1 * m + (1 - beta1) * d
    v = beta2 * v + (1 - beta2) * d^2
    x = x + server_lr * m / (sqrt(v) + tau)

As in the paper: no bias correction, ``m`` starts at 0 and ``v`` at ``tau^2`` (the paper asks for
``v >= tau^2``). The first step therefore moves each coordinate by about
``server_lr * (1 - beta1) / sqrt(1 - beta2)`` (about ``server_lr`` with the defaults) whatever the
aggregate's scale: use a server_lr far below FedAvg's 1.
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

__all__ = ["adam_step"]


def adam_step(
    params: torch.Tensor, aggregate: torch.Tensor, state: ServerState, config: StrategyConfig
) -> tuple[torch.Tensor, ServerState]:
    """One FedAdam server step; returns the new params and a state with the new ``m`` and ``v``.

    Raises ``ValueError`` for mismatched tensors or moments, ``ConfigError`` for an invalid config.
    """
    config.validate()
    check_step_inputs(params, aggregate, state)
    m, v = load_moments(state, params, config)
    m = config.beta1 * m + (1 - config.beta1) * aggregate
    v = config.beta2 * v + (1 - config.beta2) * aggregate.square()
    return adaptive_params(params, m, v, config), ServerState(step=state.step + 1, tensors={"m": m, "v": v})
