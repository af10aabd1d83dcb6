"""Coordinate-wise trimmed mean (Yin et al. 2018): drop the extremes of each coordinate, average the rest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from swarmnet.averaging import robust
from swarmnet.coordinator.strategies.base import ClientUpdate, StrategyConfig, stack_updates

__all__ = ["trimmed_mean"]


def trimmed_mean(updates: Sequence[ClientUpdate], config: StrategyConfig) -> torch.Tensor:
    """Per coordinate, drop the ``t`` lowest and highest deltas and take the sample-weighted mean of the rest.

    ``t = floor(k * trim_fraction)``, at least 1 for ``k >= 3`` (``robust.trim_count``); whatever
    ``config.aggregation`` says, this function trims. Raises ``ValueError`` for invalid updates and
    ``ConfigError`` for an invalid config.
    """
    config.validate()
    deltas, samples = stack_updates(updates)
    return robust.aggregate(deltas, samples, replace(config.robust_config(), rule="trimmed_mean"))
