"""Aggregation rules of a reducer: how ``k`` weighted contributions to one slice become one vector.

A reducer holds ``x`` of shape ``[k, n]`` (float32, one row per contributor) and positive weights
``w`` (sample counts), ``W = sum(w)``. The *breakdown point* of a rule is the share of contributors
an adversary must control to move the result arbitrarily far from the honest values.

* ``mean``: ``sum_i w_i x_i / W``. Accumulated in float64 and rounded to float32 once, so the
  uncompressed average is (almost always) the correctly rounded exact value and cannot overflow.
  Breakdown point 0: a single contributor can move it anywhere.
* ``trimmed_mean``: per coordinate, sort the ``k`` values, drop the ``t`` lowest and ``t``
  highest, and take the mean of the rest. ``t = floor(k * trim_fraction)``, raised to 1 when
  ``k >= 3`` and ``trim_fraction > 0`` (so the default 0.2 already protects groups of 3 and 4). With
  ``k <= 2t`` nothing would remain, and the rule falls back to ``median``; with ``t = 0`` (``k <= 2``
  and ``trim_fraction < 0.5``, or ``trim_fraction = 0``) it is the mean of the ``k`` values, since no
  rule can tell the honest one of two apart. Breakdown point ``t / k``.
* ``median``: coordinate-wise median; the midpoint of the middle two for even ``k`` (the lower
  median alone would bias every even group, e.g. ``min`` for ``k = 2``). Breakdown point 1/2.
* ``centered_clip`` (Karimireddy, He, Jaggi 2021): start at ``v`` = the median, then
  ``clip_iterations`` times ``v <- v + sum_i (x_i - v) min(1, tau / ||x_i - v||) / k`` with L2
  norms over the whole slice. Each contributor moves ``v`` by at most ``tau / k`` per iteration, so a
  minority of attackers has bounded influence (breakdown point 1/2 for the start, with a bounded
  drift afterwards) while honest rows within ``tau`` count fully. ``clip_tau=None`` picks ``tau`` =
  the median L2 distance of the rows from the start.

The robust rules count every contributor once and ignore the weights: a weight is its sender's own
claim, and the point of these rules is to bound what any one contributor can do, which a claimed
weight of 1e6 would undo (with weights, one attacker of five moved the weighted median by 10x the
honest update). Only ``mean`` weighs, and ``AveragingConfig.max_weight`` bounds what it accepts.

Work is done in column chunks of about ``_CHUNK_ELEMENTS`` values, so the float64 temporaries and
sort indices stay small whatever ``n`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from swarmnet.errors import ConfigError

__all__ = ["AggregationConfig", "AggregationRule", "aggregate", "trim_count"]

AggregationRule = Literal["mean", "trimmed_mean", "median", "centered_clip"]

_CHUNK_ELEMENTS = 1 << 22  # values per column chunk: float64 copy + int64 sort indices stay around 64 MiB


@dataclass(frozen=True, kw_only=True)
class AggregationConfig:
    """Which aggregation rule a reducer applies, and its parameters (see the module docstring)."""

    rule: AggregationRule = "mean"
    trim_fraction: float = 0.2  # trimmed_mean: share dropped at EACH end, t = max(1, floor(k * f)) for k >= 3
    clip_tau: float | None = None  # centered_clip radius; None = median distance of the rows from the start
    clip_iterations: int = 3

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.rule not in get_args(AggregationRule):
            raise ConfigError(f"unknown aggregation rule {self.rule!r}; expected one of {get_args(AggregationRule)}")
        if not (isinstance(self.trim_fraction, int | float) and 0.0 <= self.trim_fraction <= 0.5):
            raise ConfigError(f"trim_fraction must be in [0, 0.5], got {self.trim_fraction!r}")
        if self.clip_tau is not None and not (
            isinstance(self.clip_tau, int | float) and math.isfinite(self.clip_tau) and self.clip_tau > 0
        ):
            raise ConfigError(f"clip_tau must be None or a finite positive number, got {self.clip_tau!r}")
        if isinstance(self.clip_iterations, bool) or not isinstance(self.clip_iterations, int):
            raise ConfigError(f"clip_iterations must be an int, got {self.clip_iterations!r}")
        if self.clip_iterations < 1:
            raise ConfigError(f"clip_iterations must be >= 1, got {self.clip_iterations}")


def trim_count(k: int, trim_fraction: float) -> int:
    """How many values ``trimmed_mean`` drops at each end of ``k`` (``k <= 2t`` means: use the median)."""
    t = math.floor(k * trim_fraction)
    # floor(k * 0.2) is 0 for k < 5, which would make the default useless in small groups.
    return max(t, 1) if k >= 3 and trim_fraction > 0 else t


def aggregate(contributions: torch.Tensor, weights: torch.Tensor, config: AggregationConfig) -> torch.Tensor:
    """Aggregate ``contributions`` ``[k, n]`` (float32) with positive ``weights`` ``[k]`` into a float32 ``[n]``.

    Only ``mean`` uses the weights; the robust rules count each contribution once (module docstring).
    Raises ``ValueError`` for a wrong shape or dtype, non-finite contributions, or weights that are
    not finite and positive, and ``ConfigError`` for an invalid ``config``. The result is always a
    new tensor on the contributions' device.
    """
    config.validate()
    w = _checked_weights(contributions, weights)
    k = contributions.shape[0]
    if k == 1:  # every rule returns the only contribution, bit for bit
        return contributions[0].clone()
    if config.rule == "mean":
        return _weighted_mean(contributions, w)
    if config.rule == "median":
        return _by_columns(contributions, _median_chunk)
    if config.rule == "trimmed_mean":
        t = trim_count(k, config.trim_fraction)
        if t == 0:
            return _weighted_mean(contributions, torch.ones_like(w))
        if 2 * t >= k:  # nothing would be left between the two trimmed ends
            return _by_columns(contributions, _median_chunk)
        return _by_columns(contributions, lambda x: _trimmed_chunk(x, t))
    return _centered_clip(contributions, config)


def _checked_weights(contributions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Validate the inputs; return the weights as float64 on the contributions' device."""
    if not isinstance(contributions, torch.Tensor) or contributions.dtype != torch.float32:
        got = getattr(contributions, "dtype", type(contributions).__name__)
        raise ValueError(f"contributions must be a float32 tensor, got {got}")
    if contributions.dim() != 2 or contributions.shape[0] < 1:
        raise ValueError(f"contributions must have shape [k >= 1, n], got {list(contributions.shape)}")
    k = contributions.shape[0]
    if not isinstance(weights, torch.Tensor) or weights.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise ValueError("weights must be a real-valued tensor")
    if weights.shape != (k,):
        raise ValueError(f"weights must have shape [{k}] (one per contribution), got {list(weights.shape)}")
    w = weights.to(device=contributions.device, dtype=torch.float64)
    if not (bool(torch.isfinite(w).all()) and bool((w > 0).all()) and math.isfinite(float(w.sum()))):
        raise ValueError(f"weights must be finite and > 0, got {w.tolist()}")
    finite_rows = torch.isfinite(contributions).all(dim=1)
    if not bool(finite_rows.all()):
        bad = (~finite_rows).nonzero().flatten().tolist()
        raise ValueError(f"contributions {bad} contain NaN or Inf")
    return w


def _column_ranges(k: int, n: int) -> list[tuple[int, int]]:
    cols = max(1, _CHUNK_ELEMENTS // k)
    return [(start, min(start + cols, n)) for start in range(0, n, cols)]


def _weighted_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape[1], dtype=torch.float32, device=x.device)
    # Equal weights are divided out exactly as plain mean semantics: sum(x) / k.
    coef = torch.ones_like(w) if bool((w == w[0]).all()) else w
    total = coef.sum()
    for start, stop in _column_ranges(*x.shape):
        # float64 products and sums, one rounding to float32 at the end (and no overflow at ~3e38).
        out[start:stop] = (coef @ x[:, start:stop].to(torch.float64)) / total
    return out


def _by_columns(x: torch.Tensor, rule: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply a per-coordinate ``rule(rows)`` chunk by chunk."""
    out = torch.empty(x.shape[1], dtype=torch.float32, device=x.device)
    for start, stop in _column_ranges(*x.shape):
        out[start:stop] = rule(x[:, start:stop])
    return out


def _median_chunk(x: torch.Tensor) -> torch.Tensor:
    k = x.shape[0]
    values = torch.sort(x, dim=0).values
    mid = k // 2
    return values[mid] if k % 2 else (values[mid - 1].double() + values[mid].double()) / 2


def _trimmed_chunk(x: torch.Tensor, t: int) -> torch.Tensor:
    k = x.shape[0]
    return torch.sort(x, dim=0).values[t : k - t].double().mean(dim=0)


def _distances(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """L2 distance of every row of ``x`` from ``v`` over the whole slice, in float64 (no overflow)."""
    squares = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for start, stop in _column_ranges(*x.shape):
        squares += torch.linalg.vector_norm(x[:, start:stop].double() - v[start:stop], dim=1).square()
    return squares.sqrt()


def _centered_clip(x: torch.Tensor, config: AggregationConfig) -> torch.Tensor:
    # v stays float64 between iterations so the iterations add no float32 rounding of their own.
    v = _by_columns(x, _median_chunk).double()
    d = _distances(x, v)
    # Adaptive radius: a scale estimate the attackers cannot inflate while they are a minority: the
    # median row's distance.
    tau = float(torch.quantile(d, 0.5)) if config.clip_tau is None else config.clip_tau
    k = x.shape[0]
    for iteration in range(config.clip_iterations):
        # min(1, tau / d); a row at distance 0 contributes nothing whatever its factor, so 1 is safe.
        c = torch.where(d > tau, tau / d.clamp(min=1e-300), torch.ones_like(d)) / k
        keep = 1 - c.sum()
        need_distances = iteration + 1 < config.clip_iterations
        squares = torch.zeros_like(d)
        for start, stop in _column_ranges(*x.shape):
            rows = x[:, start:stop].double()
            # v + sum_i c_i (x_i - v) == sum_i c_i x_i + (1 - sum_i c_i) v: no [k, n] temporary.
            v[start:stop] = c @ rows + keep * v[start:stop]
            if need_distances:  # the next iteration's distances, in the same pass over the data
                squares += torch.linalg.vector_norm(rows - v[start:stop], dim=1).square()
        d = squares.sqrt()
    return v.to(torch.float32)
