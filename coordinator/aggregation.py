"""Turn a closed round's accepted updates into the next global adapter.

Plain rounds decode each update and hand them to the configured strategy (FedAvg weighted by
samples, each claim capped at twice the round's median claim; a robust rule; then the server
optimizer). Secure rounds only ever have the masked sum: it is unmasked, decoded from the field
and divided by the survivors' total weight; the server optimizer then runs on that mean exactly as
in a plain round. With differential privacy every update is clipped to ``clip_norm`` (again here,
for plain rounds: the coordinator does not rely on clients to have done it), weights are uniform
(sample counts would change the sensitivity), Gaussian noise of std ``z * clip_norm`` from the
operating system is added to the sum, by the coordinator (``central``) or split across the
clients (``distributed``, where the coordinator adds nothing), and the sum is divided by the
round's expected number of participants (``OpenRound.expected_participants``), a figure fixed
before anyone was drawn. A result holding NaN or Inf is refused (``NonFiniteAggregate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.finite import NonFiniteAggregate, non_finite_parts
from swarmnet.coordinator.open_round import OpenRound
from swarmnet.coordinator.strategies import ClientUpdate, ServerState, aggregate_updates, samples_cap, server_step
from swarmnet.federated.privacy import PrivacyConfig, clip_update
from swarmnet.federated.randomness import Randomness
from swarmnet.federated.secure_update import decode_secure, secure_weight

__all__ = ["Aggregated", "NonFiniteAggregate", "aggregate_round", "secure_weight"]


@dataclass(frozen=True)
class Aggregated:
    """The new global state and what went into it."""

    adapter: torch.Tensor
    server_state: ServerState
    contributors: tuple[str, ...]
    train_loss: float
    mean: torch.Tensor  # the aggregate before the server optimizer (what the round's updates say)
    next_scales: torch.Tensor | None = None  # secure rounds with shared scales: what the next round publishes


def aggregate_round(
    round_: OpenRound, adapter: torch.Tensor, state: ServerState, config: CoordinatorConfig
) -> Aggregated:
    """Aggregate ``round_``'s accepted updates and apply the server optimizer to ``adapter``.

    Raises ``NonFiniteAggregate`` when the aggregate, the new adapter or the new optimizer state
    would hold NaN or Inf (finite updates can overflow float32 together): the caller keeps what it had.
    """
    randomness = Randomness(config.insecure_deterministic_seed)
    next_scales = None
    if round_.secagg is not None:
        mean, contributors, next_scales = _secure_mean(round_, config, randomness)
    else:
        mean, contributors = _plain_mean(round_, config, randomness)
    if not bool(torch.isfinite(mean).all()):
        raise NonFiniteAggregate("the round's aggregate holds NaN or Inf: its updates overflow float32 together")
    new_adapter, new_state = server_step(adapter, mean, state, config.strategy)
    broken = non_finite_parts(new_adapter, new_state)
    if broken:
        raise NonFiniteAggregate(f"applying the round's aggregate makes {', '.join(broken)} NaN or Inf")
    return Aggregated(new_adapter, new_state, contributors, _mean_loss(round_, contributors), mean, next_scales)


def _plain_mean(
    round_: OpenRound, config: CoordinatorConfig, randomness: Randomness
) -> tuple[torch.Tensor, tuple[str, ...]]:
    privacy = config.privacy
    updates = []
    for sub in sorted(round_.submissions.values(), key=lambda s: s.client_id):
        assert sub.delta is not None
        updates.append(ClientUpdate(client_id=sub.client_id, delta=sub.delta, samples=sub.samples))
    contributors = tuple(u.client_id for u in updates)
    if privacy is None:
        return aggregate_updates(updates, config.strategy), contributors
    clipped = torch.stack([clip_update(u.delta, privacy.clip_norm)[0] for u in updates])
    total = clipped.sum(dim=0, dtype=torch.float64).to(torch.float32)
    if privacy.placement == "central":
        total = total + _central_noise(total.numel(), privacy, round_, randomness)
    return total / round_.expected_participants, contributors


def _secure_mean(
    round_: OpenRound, config: CoordinatorConfig, randomness: Randomness
) -> tuple[torch.Tensor, tuple[str, ...], torch.Tensor | None]:
    assert round_.secagg is not None
    assert round_.indices is not None
    survivors = tuple(round_.secagg.survivors())
    unmasked = round_.secagg.total()
    total, next_scales = decode_secure(unmasked, round_.config, round_.indices, round_.length, len(survivors))
    privacy = config.privacy
    if privacy is None:
        weight = sum(secure_weight(round_.submissions[c].samples, round_.config.samples_cap) for c in survivors)
    else:  # uniform weights: the sum over the expected participants, as in a plain private round
        weight = round_.expected_participants
        if privacy.placement == "central":
            total = total + _central_noise(total.numel(), privacy, round_, randomness)
    mean = torch.zeros(round_.length)
    mean[round_.indices] = total / weight
    return mean, survivors, next_scales


def _central_noise(length: int, privacy: PrivacyConfig, round_: OpenRound, randomness: Randomness) -> torch.Tensor:
    """The coordinator's noise on a round's sum: ``N(0, (z C)^2)`` per value, from the OS."""
    return randomness.gaussian(length, privacy.noise_multiplier * privacy.clip_norm, round_.number)


def _mean_loss(round_: OpenRound, contributors: tuple[str, ...]) -> float:
    """The contributors' reported training loss, weighted by their capped sample claims."""
    pairs = [(round_.submissions[c].train_loss, round_.submissions[c].samples) for c in contributors]
    finite = [(loss, n) for loss, n in pairs if math.isfinite(loss)]
    if not finite:
        return float("nan")
    cap = samples_cap([n for _, n in finite])
    return sum(loss * min(n, cap) for loss, n in finite) / sum(min(n, cap) for _, n in finite)
