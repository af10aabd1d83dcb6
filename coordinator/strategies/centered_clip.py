"""Centered clipping (Karimireddy, He, Jaggi 2021): iterate from the median, each delta's pull bounded by tau."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from swarmnet.averaging import robust
from swarmnet.coordinator.strategies.base import ClientUpdate, StrategyConfig, stack_updates

__all__ = ["centered_clip"]


def centered_clip(updates: Sequence[ClientUpdate], config: StrategyConfig) -> torch.Tensor:
    """Start at the weighted median of the deltas, then ``clip_iterations`` clipped mean steps of radius ``clip_tau``.

    ``clip_tau=None`` uses the median distance of the deltas from the start; whatever
    ``config.aggregation`` says, this function clips. Raises ``ValueError`` for invalid updates and
    ``ConfigError`` for an invalid config.
    """
    config.validate()
    deltas, samples = stack_updates(updates)
    return robust.aggregate(deltas, samples, replace(config.robust_config(), rule="centered_clip"))
