"""What a round asks of its clients (``rounds.py``): the ``RoundConfig`` sent with each task."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.secagg_unmask import threshold_for
from swarmnet.coordinator.strategies import secure_samples_cap
from swarmnet.federated.secure_update import scales_to_bytes
from swarmnet.proto import federated_pb2 as pb

__all__ = ["round_config"]


def round_config(
    coordinator: CoordinatorConfig,
    registry: ClientRegistry,
    selected: tuple[str, ...],
    rng: random.Random,
    shared_scales: Callable[[], torch.Tensor],
) -> pb.RoundConfig:
    """The config of a round of ``selected``; ``rng`` draws its secure seed, ``shared_scales`` gives the
    scales a scaled secure round publishes."""
    settings, privacy = coordinator.rounds, coordinator.privacy
    config = pb.RoundConfig(
        local_steps=settings.local_steps,
        codec=settings.codec,
        topk_ratio=settings.topk_ratio,
        error_feedback=settings.error_feedback,
        participants=len(selected),
        learning_rate=settings.learning_rate,
    )
    if settings.secure_aggregation:
        _secure(config, coordinator, selected, rng, shared_scales)
        samples = [registry.clients[c].samples for c in selected]
        config.samples_cap = 0 if privacy is not None else secure_samples_cap(samples)
    if privacy is not None:
        config.dp_clip_norm = privacy.clip_norm
        if privacy.placement == "distributed":
            config.dp_noise_std = privacy.noise_multiplier * privacy.clip_norm / len(selected) ** 0.5
    return config


def _secure(
    config: pb.RoundConfig,
    coordinator: CoordinatorConfig,
    selected: tuple[str, ...],
    rng: random.Random,
    shared_scales: Callable[[], torch.Tensor],
) -> None:
    """Fill in the secure-aggregation fields of ``config``."""
    secagg = coordinator.secagg
    config.secure_aggregation = True
    config.secagg_clip, config.secagg_bits, config.secagg_density = secagg.clip, secagg.bits, secagg.density
    config.secagg_seed = rng.getrandbits(62)
    config.secagg_max_clients = secagg.max_clients
    config.secagg_threshold = threshold_for(len(selected), secagg.dropout_fraction)
    config.secagg_encoding = secagg.encoding
    if secagg.encoding == "scaled":  # whole packed words travel; scales as the last round left them
        config.secagg_bits, config.secagg_levels, config.secagg_block = 32, secagg.levels, secagg.block
        config.secagg_scales = scales_to_bytes(shared_scales())
