"""Differential privacy of federated rounds: clip each update, add Gaussian noise, account for the privacy spent.

User-level DP-FedAvg (McMahan et al. 2018): each client's delta is clipped to L2 norm ``C``
(``clip_norm``), so adding or removing one client changes the *sum* of the deltas by at most ``C``;
Gaussian noise of std ``z * C`` (``z`` = ``noise_multiplier``) on that sum makes one round the
Gaussian mechanism, and sampling each client into a round with probability ``q`` (the
``sample_rate``) amplifies it. Where the noise is added (``PrivacyConfig.placement``):

* ``central``: the coordinator sees the clipped updates and adds ``N(0, (z C)^2)`` to their sum.
* ``distributed``: each of the ``m`` clients of a round adds ``N(0, (z C)^2 / m)`` to its own
  clipped update, and secure aggregation shows the coordinator only the sum, whose noise is
  ``N(0, (z C)^2)`` again. The guarantee holds only if all ``m`` clients are honest and report:
  the noise of clients that drop out or collude is missing from the sum, so size ``m`` for the
  clients that are sure to survive the round.

The server divides the noised sum by the *expected* number of participants, ``q`` times the
clients it sampled from (McMahan et al.'s fixed denominator), not by how many were drawn. Every
draw of noise comes from the operating system (``swarmnet.federated.randomness``): noise anyone
can regenerate can be subtracted.

``PrivacyAccountant`` tracks the Rényi DP (RDP) of the Poisson-subsampled Gaussian mechanism over
the rounds (Mironov, Talwar, Zhang 2019) and converts it to ``(epsilon, delta)``-DP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeGuard, get_args

import torch

from swarmnet.errors import ConfigError

__all__ = [
    "DEFAULT_ORDERS",
    "Placement",
    "PrivacyAccountant",
    "PrivacyConfig",
    "clip_update",
    "gaussian_noise",
    "rdp_to_epsilon",
    "subsampled_gaussian_rdp",
]

Placement = Literal["central", "distributed"]

# Integer Rényi orders only: the binomial expansion below is exact for them, and for the
# epsilons worth having (about 0.5 to 10) the best order lies between 2 and a few dozen, where a
# grid step of 1 costs little. Fractional orders below 2 would help only at very small epsilons.
DEFAULT_ORDERS: tuple[int, ...] = (*range(2, 65), 128, 256)


def _is_real(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """How updates are clipped and noised; ``validate()`` raises ``ConfigError``."""

    clip_norm: float = 1.0  # C: each delta is scaled down to L2 norm <= C, the sum's sensitivity
    noise_multiplier: float = 1.0  # z: the noise on the sum has std z * C (0: no noise, no privacy)
    delta: float = 1e-5  # the delta of the (epsilon, delta) guarantee; well below 1 / clients
    placement: Placement = "central"  # who adds the noise (see the module docstring)

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if not (_is_real(self.clip_norm) and self.clip_norm > 0):
            raise ConfigError(f"clip_norm must be a finite number > 0, got {self.clip_norm!r}")
        if not (_is_real(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigError(f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier!r}")
        if not (_is_real(self.delta) and 0 < self.delta < 1):
            raise ConfigError(f"delta must be in (0, 1), got {self.delta!r}")
        if self.placement not in get_args(Placement):
            raise ConfigError(f"unknown placement {self.placement!r}; expected one of {get_args(Placement)}")

    def noise_std(self, clients: int) -> float:
        """The std of the noise one party adds in a round of ``clients`` clients.

        ``z * C`` from the coordinator (central), or ``z * C / sqrt(clients)`` from each client
        (distributed), so the sum carries ``z * C`` either way.
        """
        if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
            raise ValueError(f"clients must be an int >= 1, got {clients!r}")
        std = self.noise_multiplier * self.clip_norm
        return std if self.placement == "central" else std / math.sqrt(clients)


def clip_update(delta: torch.Tensor, clip_norm: float) -> tuple[torch.Tensor, float]:
    """A copy of ``delta`` scaled to L2 norm at most ``clip_norm``, and the original L2 norm.

    A delta within the norm is copied unchanged. The norm and the scaling are computed in float64,
    so the result exceeds ``clip_norm`` by float rounding at most (relative 1e-7 in float32).
    Raises ``ValueError`` for a non-floating or non-finite delta or a bad ``clip_norm``.
    """
    if not (_is_real(clip_norm) and clip_norm > 0):
        raise ValueError(f"clip_norm must be a finite number > 0, got {clip_norm!r}")
    if not isinstance(delta, torch.Tensor) or not delta.is_floating_point():
        raise ValueError(f"delta must be a floating-point tensor, got {getattr(delta, 'dtype', type(delta))}")
    norm = float(torch.linalg.vector_norm(delta, dtype=torch.float64))
    if not math.isfinite(norm):
        raise ValueError("delta contains NaN or Inf")
    if norm <= clip_norm:
        return delta.clone(), norm
    return (delta.double() * (clip_norm / norm)).to(delta.dtype), norm


def gaussian_noise(length: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """``length`` float32 samples of ``N(0, std^2)`` from ``generator``, on its device.

    Reproducible by anyone who can reproduce the generator, and a torch generator keeps only 32
    bits of its seed: this is the insecure deterministic mode's noise (experiments, tests). Noise
    that protects anything comes from ``swarmnet.federated.randomness`` (``os.urandom``). Raises
    ``ValueError`` for a negative length or std.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be an int >= 0, got {length!r}")
    if not (_is_real(std) and std >= 0):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    noise = torch.randn(length, generator=generator, dtype=torch.float32, device=generator.device)
    return noise.mul_(std)


def subsampled_gaussian_rdp(sample_rate: float, noise_multiplier: float, order: int) -> float:
    """RDP at integer ``order`` of one round: the Gaussian mechanism on a Poisson sample.

    Mironov, Talwar, Zhang 2019, Sec. 3.3: with ``q`` = ``sample_rate`` and ``z`` =
    ``noise_multiplier``, ``rdp = log(A) / (order - 1)`` where
    ``A = sum_k binom(order, k) (1 - q)^(order - k) q^k exp((k^2 - k) / (2 z^2))``,
    summed in log space. ``q = 1`` is the plain Gaussian mechanism, ``order / (2 z^2)``.
    """
    _check_mechanism(noise_multiplier, sample_rate)
    if isinstance(order, bool) or not isinstance(order, int) or order < 2:
        raise ValueError(f"order must be an int >= 2, got {order!r}")
    if sample_rate == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    if sample_rate == 1:
        return order / (2 * noise_multiplier**2)
    log_q, log_not_q = math.log(sample_rate), math.log1p(-sample_rate)
    two_z2 = 2 * noise_multiplier**2
    terms = [
        math.log(math.comb(order, k)) + k * log_q + (order - k) * log_not_q + (k * k - k) / two_z2
        for k in range(order + 1)
    ]
    # A >= 1 (a Rényi divergence is >= 0); rounding can leave log(A) a hair below 0.
    return max(_log_sum_exp(terms), 0.0) / (order - 1)


def _log_sum_exp(terms: Sequence[float]) -> float:
    top = max(terms)
    return top + math.log(math.fsum(math.exp(t - top) for t in terms))


def _check_mechanism(noise_multiplier: float, sample_rate: float) -> None:
    if not (_is_real(noise_multiplier) and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}")
    if not (_is_real(sample_rate) and 0 <= sample_rate <= 1):
        raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate!r}")


def rdp_to_epsilon(
    orders: Sequence[int], rdp: Sequence[float], delta: float, *, tight: bool = True
) -> tuple[float, int]:
    """The smallest ``epsilon`` of ``(epsilon, delta)``-DP the RDP curve implies, and its order.

    ``tight`` (default): Balle et al. 2020, Theorem 21, as TF-Privacy and Opacus use it,
    ``eps = rdp(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)``. Otherwise the
    standard conversion (Mironov 2017, Proposition 3), ``eps = rdp(a) + log(1 / delta) / (a - 1)``.
    An RDP of 0 at any order is ``epsilon = 0``.
    """
    if not (_is_real(delta) and 0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if len(orders) != len(rdp) or not orders:
        raise ValueError(f"need one RDP value per order, got {len(rdp)} values for {len(orders)} orders")
    if any(isinstance(a, bool) or not isinstance(a, int) or a < 2 for a in orders):
        raise ValueError(f"orders must be ints >= 2, got {list(orders)!r}")
    if any(math.isnan(r) or r < 0 for r in rdp):
        raise ValueError(f"RDP values must be >= 0, got {list(rdp)!r}")
    candidates = []
    for a, r in zip(orders, rdp, strict=True):
        if r == 0:  # a Rényi divergence is 0 only between equal distributions: nothing was revealed
            return 0.0, a
        if tight:
            eps = r + math.log1p(-1 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        else:
            eps = r + math.log(1 / delta) / (a - 1)
        candidates.append((eps, a))
    eps, order = min(candidates)
    return max(eps, 0.0), order


class PrivacyAccountant:
    """Rényi DP accountant of the Poisson-subsampled Gaussian mechanism, composed over rounds.

    Call ``step(z, q)`` once per round (or ``step(z, q, steps=n)`` for ``n`` like rounds) and read
    ``epsilon(delta)``; RDP composes by adding up per order. Persist it with ``state_dict()``
    (tensors, saveable as safetensors) and ``load_state_dict()``. Not thread-safe.

    In DP-FedAvg, ``z`` is ``PrivacyConfig.noise_multiplier`` and ``q`` the probability that a
    client takes part in a round; the guarantee is then per client, not per example, and holds
    only if each client is sampled independently with probability ``q`` (Poisson) from secret
    randomness. The coordinator does exactly that (``swarmnet.coordinator.sampling``), over the
    clients active when the round opens, and steps this accountant with the ``q`` it used.
    Only integer orders are tracked (``DEFAULT_ORDERS``), so epsilon is a valid, slightly loose
    upper bound where the best order would be fractional (very small epsilons).
    """

    def __init__(self, orders: Sequence[int] = DEFAULT_ORDERS) -> None:
        self._orders = _checked_orders(orders)
        self._rdp = [0.0] * len(self._orders)
        self._steps = 0

    @property
    def orders(self) -> tuple[int, ...]:
        """The Rényi orders tracked, ascending."""
        return self._orders

    @property
    def steps(self) -> int:
        """Rounds accounted for so far."""
        return self._steps

    def rdp(self) -> tuple[float, ...]:
        """The accumulated RDP, one value per order."""
        return tuple(self._rdp)

    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Account for ``steps`` rounds with noise multiplier ``z`` and sampling rate ``q``.

        Raises ``ValueError`` for ``z < 0``, ``q`` outside ``[0, 1]`` or ``steps < 1``; ``z = 0``
        (no noise) makes epsilon infinite unless ``q = 0``.
        """
        _check_mechanism(noise_multiplier, sample_rate)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        per_round = [subsampled_gaussian_rdp(sample_rate, noise_multiplier, a) for a in self._orders]
        self._rdp = [total + steps * r for total, r in zip(self._rdp, per_round, strict=True)]
        self._steps += steps

    def epsilon(self, delta: float, *, tight: bool = True) -> float:
        """The ``epsilon`` of the ``(epsilon, delta)``-DP spent so far (see ``rdp_to_epsilon``)."""
        return rdp_to_epsilon(self._orders, self._rdp, delta, tight=tight)[0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``orders`` (int64), ``rdp`` (float64) and ``steps`` (int64, one element): copies of the state."""
        return {
            "orders": torch.tensor(self._orders, dtype=torch.int64),
            "rdp": torch.tensor(self._rdp, dtype=torch.float64),
            "steps": torch.tensor([self._steps], dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Replace all state (orders included) with ``state`` as ``state_dict`` makes it.

        Everything is checked before anything changes; raises ``ValueError`` if malformed.
        """
        if not isinstance(state, dict) or set(state) != {"orders", "rdp", "steps"}:
            raise ValueError("accountant state must be a dict with exactly 'orders', 'rdp' and 'steps'")
        orders, rdp, steps = state["orders"], state["rdp"], state["steps"]
        for name, tensor, dtype in (
            ("orders", orders, torch.int64),
            ("rdp", rdp, torch.float64),
            ("steps", steps, torch.int64),
        ):
            if not isinstance(tensor, torch.Tensor) or tensor.dtype != dtype or tensor.dim() != 1:
                raise ValueError(f"accountant state {name!r} must be a 1-D {dtype} tensor")
        loaded_orders = _checked_orders([int(a) for a in orders.tolist()])
        values = [float(r) for r in rdp.tolist()]
        if len(values) != len(loaded_orders) or any(math.isnan(r) or r < 0 for r in values):
            raise ValueError("accountant state 'rdp' must hold one value >= 0 per order")
        if steps.numel() != 1 or int(steps[0]) < 0:
            raise ValueError("accountant state 'steps' must hold one int >= 0")
        self._orders, self._rdp, self._steps = loaded_orders, values, int(steps[0])


def _checked_orders(orders: Sequence[int]) -> tuple[int, ...]:
    if not orders or any(isinstance(a, bool) or not isinstance(a, int) or a < 2 for a in orders):
        raise ValueError(f"orders must be a non-empty sequence of ints >= 2, got {list(orders)!r}")
    if len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct, got {list(orders)!r}")
    return tuple(sorted(orders))
