"""Pick a strategy's rule and optimizer from its config, and the named presets."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from types import MappingProxyType
from typing import Any

import torch

from swarmnet.coordinator.strategies.base import ClientUpdate, OptimizerName, ServerState, StrategyConfig
from swarmnet.coordinator.strategies.centered_clip import centered_clip
from swarmnet.coordinator.strategies.fedadam import adam_step
from swarmnet.coordinator.strategies.fedavg import sgd_step, weighted_mean
from swarmnet.coordinator.strategies.fedyogi import yogi_step
from swarmnet.coordinator.strategies.trimmed_mean import trimmed_mean
from swarmnet.errors import ConfigError

__all__ = ["STRATEGY_NAMES", "aggregate_updates", "server_step", "strategy_config"]

ServerStep = Callable[[torch.Tensor, torch.Tensor, ServerState, StrategyConfig], tuple[torch.Tensor, ServerState]]

_STEPS: Mapping[OptimizerName, ServerStep] = MappingProxyType({"sgd": sgd_step, "adam": adam_step, "yogi": yogi_step})

# Adaptive server optimizers move each coordinate by about server_lr on their first step whatever
# the aggregate's scale (see fedadam), so FedAvg's server_lr = 1 would be far too large; 1e-2 is
# the order of the best server learning rates in Reddi et al.'s grids.
_ADAPTIVE_LR = 1e-2

_PRESETS: Mapping[str, StrategyConfig] = MappingProxyType(
    {
        "fedavg": StrategyConfig(),
        "fedadam": StrategyConfig(server_optimizer="adam", server_lr=_ADAPTIVE_LR),
        "fedyogi": StrategyConfig(server_optimizer="yogi", server_lr=_ADAPTIVE_LR),
        "trimmed_mean": StrategyConfig(aggregation="trimmed_mean"),
        "centered_clip": StrategyConfig(aggregation="centered_clip"),
    }
)

STRATEGY_NAMES: tuple[str, ...] = tuple(_PRESETS)


def strategy_config(name: str, **overrides: Any) -> StrategyConfig:  # Any: validate() checks every value
    """The preset ``name`` (one of ``STRATEGY_NAMES``) with ``overrides`` applied, validated.

    Raises ``ConfigError`` for an unknown name, an unknown field or an invalid value.
    """
    if name not in _PRESETS:
        raise ConfigError(f"unknown strategy {name!r}; expected one of {STRATEGY_NAMES}")
    unknown = set(overrides) - {f.name for f in fields(StrategyConfig)}
    if unknown:
        raise ConfigError(f"StrategyConfig has no field(s) {sorted(unknown)}")
    config = replace(_PRESETS[name], **overrides)
    config.validate()
    return config


def aggregate_updates(updates: Sequence[ClientUpdate], config: StrategyConfig) -> torch.Tensor:
    """Aggregate ``updates`` with ``config.aggregation``: a new float32 tensor of the deltas' length.

    Raises ``ValueError`` for invalid updates and ``ConfigError`` for an invalid config.
    """
    config.validate()
    if config.aggregation == "trimmed_mean":
        return trimmed_mean(updates, config)
    if config.aggregation == "centered_clip":
        return centered_clip(updates, config)
    return weighted_mean(updates)


def server_step(
    params: torch.Tensor, aggregate: torch.Tensor, state: ServerState, config: StrategyConfig
) -> tuple[torch.Tensor, ServerState]:
    """Apply ``aggregate`` to ``params`` with ``config.server_optimizer``; returns new params and state."""
    config.validate()
    return _STEPS[config.server_optimizer](params, aggregate, state, config)
