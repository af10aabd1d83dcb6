"""Turn a closed round's accepted updates into the next global adapter.

Plain rounds decode each update and hand them to the configured strategy (FedAvg weighted by
samples, a robust rule, then the server optimizer). Secure rounds only ever have the masked sum:
it is unmasked, decoded from the field and divided by the survivors' total weight; the server
optimizer then runs on that mean exactly as in a plain round. With differential privacy every
update is clipped to ``clip_norm`` (again here, for plain rounds: the coordinator does not rely on
clients to have done it), weights are uniform (sample counts would change the sensitivity), and
Gaussian noise of std ``z * clip_norm`` is added to the sum, by the coordinator (``central``) or
split across the clients (``distributed``, where the coordinator adds nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.open_round import OpenRound
from swarmnet.coordinator.strategies import ClientUpdate, ServerState, aggregate_updates, server_step
from swarmnet.federated.privacy import clip_update, gaussian_noise
from swarmnet.federated.secure_update import decode_sum, field_config, secure_weight

__all__ = ["Aggregated", "aggregate_round", "secure_weight"]


@dataclass(frozen=True)
class Aggregated:
    """The new global state and what went into it."""

    adapter: torch.Tensor
    server_state: ServerState
    contributors: tuple[str, ...]
    train_loss: float
    mean: torch.Tensor  # the aggregate before the server optimizer (what the round's updates say)


def aggregate_round(
    round_: OpenRound, adapter: torch.Tensor, state: ServerState, config: CoordinatorConfig
) -> Aggregated:
    """Aggregate ``round_``'s accepted updates and apply the server optimizer to ``adapter``."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + round_.number)
    if round_.secagg is not None:
        mean, contributors = _secure_mean(round_, config, generator)
    else:
        mean, contributors = _plain_mean(round_, config, generator)
    new_adapter, new_state = server_step(adapter, mean, state, config.strategy)
    return Aggregated(new_adapter, new_state, contributors, _mean_loss(round_, contributors), mean)


def _plain_mean(
    round_: OpenRound, config: CoordinatorConfig, generator: torch.Generator
) -> tuple[torch.Tensor, tuple[str, ...]]:
    privacy = config.privacy
    updates = []
    for sub in sorted(round_.submissions.values(), key=lambda s: s.client_id):
        assert sub.delta is not None
        delta, samples = sub.delta, sub.samples
        if privacy is not None:
            delta, samples = clip_update(delta, privacy.clip_norm)[0], 1
        updates.append(ClientUpdate(client_id=sub.client_id, delta=delta, samples=samples))
    mean = aggregate_updates(updates, config.strategy)
    if privacy is not None and privacy.placement == "central":
        std = privacy.noise_multiplier * privacy.clip_norm / len(updates)
        mean = mean + gaussian_noise(mean.numel(), std, generator)
    return mean, tuple(u.client_id for u in updates)


def _secure_mean(
    round_: OpenRound, config: CoordinatorConfig, generator: torch.Generator
) -> tuple[torch.Tensor, tuple[str, ...]]:
    assert round_.secagg is not None
    assert round_.indices is not None
    bits = round_.config.secagg_bits
    field = field_config(bits, round_.config.secagg_clip, round_.config.secagg_max_clients)
    total = decode_sum(round_.secagg.total(), field, bits).to(torch.float32)
    survivors = tuple(round_.secagg.survivors())
    weight = sum(secure_weight(round_.submissions[c].samples, round_.config.samples_cap) for c in survivors)
    privacy = config.privacy
    if privacy is not None and privacy.placement == "central":
        total = total + gaussian_noise(total.numel(), privacy.noise_multiplier * privacy.clip_norm, generator)
    mean = torch.zeros(round_.length)
    mean[round_.indices] = total / weight
    return mean, survivors


def _mean_loss(round_: OpenRound, contributors: tuple[str, ...]) -> float:
    pairs = [(round_.submissions[c].train_loss, round_.submissions[c].samples) for c in contributors]
    finite = [(loss, n) for loss, n in pairs if math.isfinite(loss)]
    if not finite:
        return float("nan")
    return sum(loss * n for loss, n in finite) / sum(n for _, n in finite)
