"""An independent reference for the accountant: Rényi divergences of the subsampled Gaussian by quadrature.

One round of Poisson-sampled DP-FedAvg, sensitivity 1 and noise ``sigma`` (the noise multiplier):
without the client the output is ``mu0 = N(0, sigma^2)``; with it, the client is in the sample with
probability ``q`` and the output is ``mu1 = (1 - q) N(0, sigma^2) + q N(1, sigma^2)``. The RDP at
order ``alpha`` is the larger of ``D_alpha(mu1 || mu0)`` and ``D_alpha(mu0 || mu1)``, where
``D_alpha(P || Q) = log(integral P^alpha Q^(1 - alpha)) / (alpha - 1)``. Here both integrals are
summed numerically over the densities (the trapezoid rule on a fine grid, in log space so nothing
overflows), sharing no formula with ``swarmnet.federated.privacy``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["numeric_epsilon", "numeric_rdp"]

_STEP = 1e-3  # grid spacing, in units of the sensitivity: the integrands are smooth Gaussian bumps


def _log_trapezoid(log_values: np.ndarray, step: float) -> float:
    """``log(integral exp(log_values))`` by the trapezoid rule, scaled by the largest value first."""
    top = float(np.max(log_values))
    weights = np.exp(log_values - top)
    return top + math.log(step * (float(weights.sum()) - 0.5 * float(weights[0] + weights[-1])))


def numeric_rdp(q: float, sigma: float, alpha: int) -> float:
    """The RDP at integer ``alpha`` of one Poisson-subsampled Gaussian round, by numerical integration."""
    # The mass of mu1^alpha mu0^(1 - alpha) sits near x = alpha (the shifted Gaussian's tilt), that of
    # the reverse between 1 - alpha and 0: integrate far enough past both that the tails are nothing.
    reach = alpha + 40 * sigma
    x = np.arange(-reach, reach + _STEP, _STEP)
    log_norm = math.log(sigma * math.sqrt(2 * math.pi))
    log_mu0 = -(x**2) / (2 * sigma**2) - log_norm
    log_mu1 = np.logaddexp(math.log1p(-q) + log_mu0, math.log(q) - (x - 1) ** 2 / (2 * sigma**2) - log_norm)
    forward = _log_trapezoid(alpha * log_mu1 + (1 - alpha) * log_mu0, _STEP) / (alpha - 1)
    backward = _log_trapezoid(alpha * log_mu0 + (1 - alpha) * log_mu1, _STEP) / (alpha - 1)
    return max(forward, backward, 0.0)


def numeric_epsilon(q: float, sigma: float, rounds: int, delta: float, orders: range) -> float:
    """Epsilon of ``rounds`` such rounds: composed RDP, then Balle et al. 2020's conversion, best order."""
    best = math.inf
    for alpha in orders:
        rdp = rounds * numeric_rdp(q, sigma, alpha)
        eps = rdp + math.log1p(-1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
        best = min(best, eps)
    return max(best, 0.0)
