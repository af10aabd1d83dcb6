"""Who takes part in a round: a draw from the active clients, with randomness nobody can predict.

Without differential privacy a round takes ``clients_per_round`` of the active clients, uniformly
without replacement. With it, each active client is in the round independently with probability
``q = min(1, clients_per_round / active)`` (Poisson sampling): the procedure whose privacy the RDP
accountant computes, so the round's size varies around ``clients_per_round`` and the accountant is
stepped with exactly this ``q``. The population is the clients active when the round opens (those
that polled within ``active_window_s``), not every client ever registered: a client that is away
cannot be drawn, so counting it would understate every active client's ``q``.

The draw comes from ``Randomness.rng``, ``secrets.SystemRandom`` unless the coordinator runs in the
insecure deterministic mode: amplification by sampling assumes nobody knows who was drawn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Sample", "draw_sample"]


@dataclass(frozen=True)
class Sample:
    """One round's participants and how they were drawn."""

    selected: tuple[str, ...]  # sorted client ids
    rate: float  # q: the probability that any one active client is in ``selected``
    population: int  # active clients drawn from

    def problem(self, min_participants: int, max_clients: int | None = None) -> str:
        """Why this draw cannot make a round ("" if it can): a Poisson draw's size varies."""
        drawn = len(self.selected)
        if drawn < min_participants:
            return f"drew {drawn} of {self.population} active clients, {min_participants} needed"
        if max_clients is not None and drawn > max_clients:
            return f"drew {drawn} clients, more than secure aggregation's max_clients ({max_clients})"
        return ""


def draw_sample(active: Sequence[str], clients_per_round: int, poisson: bool, rng: random.Random) -> Sample:
    """Draw a round's participants from ``active`` (Poisson when ``poisson``, else a fixed-size sample).

    Raises ``ValueError`` for ``clients_per_round < 1``.
    """
    if clients_per_round < 1:
        raise ValueError(f"clients_per_round must be >= 1, got {clients_per_round}")
    population = len(active)
    if population == 0:
        return Sample((), 0.0, 0)
    rate = min(1.0, clients_per_round / population)
    if poisson:
        chosen = [client for client in active if rng.random() < rate]
    else:
        chosen = rng.sample(list(active), min(clients_per_round, population))
    return Sample(tuple(sorted(chosen)), rate, population)
