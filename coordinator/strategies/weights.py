"""How much a client's claimed sample count may weigh: at most twice the round's median claim.

FedAvg weights each update by the samples its client says it trained on, and nothing can check that
figure: a client claiming 10**12 samples would otherwise *be* the aggregate. Each claim therefore
counts for at most ``WEIGHT_CAP_MEDIANS`` times the round's lower median claim. Honest clients of
ordinary skew keep their exact weights (the Dirichlet splits of the federated experiment stay under
1.9x the median), while a liar weighs like a client twice the median size: among ``k`` honest
clients of one size, its share is at most ``2 / (k + 2)``. The lower median is a claim an honest
client made as long as liars are fewer than half the round, so they cannot raise the cap either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["WEIGHT_CAP_MEDIANS", "cap_weights", "samples_cap", "secure_samples_cap"]

WEIGHT_CAP_MEDIANS = 2.0


def samples_cap(samples: Sequence[int]) -> int:
    """The largest sample count that counts in a round whose clients claim ``samples`` (at least 1)."""
    if not samples:
        return 1
    ordered = sorted(max(0, int(s)) for s in samples)
    lower_median = ordered[(len(ordered) - 1) // 2]
    return max(1, math.ceil(WEIGHT_CAP_MEDIANS * lower_median))


def cap_weights(samples: torch.Tensor) -> torch.Tensor:
    """``samples`` (one claim per client) with each entry clamped to ``samples_cap`` of them."""
    cap = samples_cap([int(s) for s in samples.tolist()])
    return samples.clamp(max=float(cap))


def secure_samples_cap(samples: Sequence[int]) -> int:
    """A secure round's ``samples_cap``: each client scales its own values by ``min(s, cap) / cap``.

    The largest registered claim, but at most ``samples_cap``: an inflated claim would otherwise
    shrink every other client's weight to nothing (and its quantized values to zero).
    """
    return max(1, min(max(samples, default=1), samples_cap(samples)))
