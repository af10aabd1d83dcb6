"""Adaptive per-tensor codec choice, in the spirit of L-GreCo (Markov et al., MLSys 2024).

Layers differ in size and in how well they compress, so one codec for all of them wastes bytes
on some and accuracy on others. ``CompressionPolicy.plan`` measures, for every tensor and every
candidate codec, the real payload size and the relative L2 error of a round trip
(``||x - decode(encode(x))|| / ||x||``), then picks one codec per tensor:

* **error budget** (``PolicyConfig.error_budget``): per tensor, the smallest payload whose error
  is within the budget; when no candidate is, the most accurate one (the plan then says the
  budget was not met);
* **byte budget** (``PolicyConfig.byte_budget``): the assignment that minimises the squared L2 error
  of the whole flattened update subject to ``sum_i bytes_i <= byte_budget``: L-GreCo's knapsack,
  solved by dynamic programming over ``dp_buckets`` units of bytes (costs rounded up, capacity
  down, so a plan always fits; exact when ``byte_budget <= dp_buckets``), then a greedy pass spends
  the rounding's leftover on the best upgrades that still fit. Keep ``dp_buckets`` well above the
  number of tensors (the DP costs ``tensors x candidates x dp_buckets`` steps). When even the
  cheapest codec of every tensor exceeds the budget, the plan is that cheapest assignment and says
  the budget was not met.

Large tensors (over ``max_measured_elements``) are measured on a seeded sample of whole blocks
of ``sample_block`` elements, starting at multiples of ``sample_block`` so every codec's own
blocks (1024, 4096, ... dividing it) line up as in the full tensor. The error is the sample's
relative error; the payload size is extrapolated with an affine fit (header + per-block bytes)
from encoding the sample and its first block alone. That is exact for the cast codecs, off by a
partial last block at most for the blockwise ones, and a few percent low for top-k, whose index
gaps are bit-packed at the width of the largest gap, which grows with the tensor.

Usage::

    policy = CompressionPolicy(PolicyConfig(candidates=("fp16", "int8", "sign1bit"), error_budget=0.05))
    assignment = policy.plan({name: p.grad for name, p in model.named_parameters()})  # {"fc.weight": "int8"}
    payload = policy.codec_for("layer.weight").encode(grad)
"""

from __future__ import annotations

import math
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from swarmnet.compression.base import Codec
from swarmnet.compression.registry import get_codec
from swarmnet.errors import ConfigError

__all__ = [
    "CandidateCost",
    "CompressionPolicy",
    "PolicyConfig",
    "PolicyPlan",
    "PolicyStatistics",
    "decide",
]

_MAX_DP_BUCKETS = 10_000_000
_SHAPE_FIELD = 8  # bytes per dimension in a payload header (wire.py)


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """What the policy chooses from and under which budget; ``validate()`` raises ``ConfigError``."""

    # Registry names of the codecs to choose from, e.g. ("none", "fp16", "int8", "int4", "sign1bit").
    candidates: tuple[str, ...] = ("none", "fp16", "int8", "int4", "sign1bit", "topk1pct")
    # Exactly one of the two budgets. Max relative L2 error per tensor:
    error_budget: float | None = None
    # Max total payload bytes of one plan, over all tensors:
    byte_budget: int | None = None
    # Tensors with more elements are measured on a seeded sample of about this many elements.
    max_measured_elements: int = 1 << 20
    # Length of one sampled block; a multiple of every candidate's block size keeps blocks aligned.
    sample_block: int = 1 << 16
    # Picks the sampled blocks (mixed with each tensor's name, so plans are reproducible).
    seed: int = 0
    # The byte budget is discretised into at most this many units for the dynamic programme.
    dp_buckets: int = 10_000

    def validate(self) -> None:
        """Raise ``ConfigError`` for a missing, doubled or out-of-range setting."""
        if not isinstance(self.candidates, tuple) or not self.candidates:
            raise ConfigError(f"candidates must be a non-empty tuple of codec names, got {self.candidates!r}")
        if not all(isinstance(name, str) and name for name in self.candidates):
            raise ConfigError(f"candidates must be non-empty strings, got {self.candidates!r}")
        if len(set(self.candidates)) != len(self.candidates):
            raise ConfigError(f"candidates must not repeat a name, got {self.candidates!r}")
        if (self.error_budget is None) == (self.byte_budget is None):
            raise ConfigError("set exactly one of error_budget (max relative error) and byte_budget (total bytes)")
        if self.error_budget is not None and (
            not _is_real(self.error_budget) or not math.isfinite(self.error_budget) or self.error_budget < 0
        ):
            raise ConfigError(f"error_budget must be a finite relative error >= 0, got {self.error_budget!r}")
        if self.byte_budget is not None and (
            not isinstance(self.byte_budget, int) or isinstance(self.byte_budget, bool) or self.byte_budget <= 0
        ):
            raise ConfigError(f"byte_budget must be a positive int, got {self.byte_budget!r}")
        if not _is_int(self.sample_block) or self.sample_block < 1:
            raise ConfigError(f"sample_block must be a positive int, got {self.sample_block!r}")
        if not _is_int(self.max_measured_elements) or self.max_measured_elements < 2 * self.sample_block:
            raise ConfigError(
                f"max_measured_elements must be an int >= 2 * sample_block ({2 * self.sample_block}), "
                f"got {self.max_measured_elements!r}"
            )
        if not _is_int(self.seed):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
        if not _is_int(self.dp_buckets) or not 1 <= self.dp_buckets <= _MAX_DP_BUCKETS:
            raise ConfigError(f"dp_buckets must be an int in [1, {_MAX_DP_BUCKETS}], got {self.dp_buckets!r}")


@dataclass(frozen=True)
class CandidateCost:
    """What one codec does to one tensor."""

    nbytes: int  # payload bytes (measured, or extrapolated from a sample)
    rel_error: float  # ||x - x̂|| / ||x||; inf when x is zero and x̂ is not, or when x̂ is not finite
    sq_error: float  # ||x - x̂||^2 (from the sample: rel_error^2 * ||x||^2); inf when not finite
    sampled: bool = False  # measured on a sample of blocks


@dataclass(frozen=True)
class PolicyPlan:
    """One codec per tensor, with what the measurements predict for it."""

    assignment: Mapping[str, str]  # tensor name -> codec name
    predicted_bytes: int  # total payload bytes over all tensors
    predicted_errors: Mapping[str, float]  # tensor name -> relative L2 error
    budget_met: bool  # every error within error_budget, or the total within byte_budget
    tensor_bytes: Mapping[str, int]  # tensor name -> payload bytes
    total_rel_error: float  # sqrt(sum ||x_i - x̂_i||^2 / sum ||x_i||^2): the whole update's error


@dataclass(frozen=True)
class PolicyStatistics:
    """A snapshot of the policy after its latest plan."""

    plans: int  # plans made so far
    tensors: int  # tensors in the latest plan
    raw_bytes: int  # their uncompressed size
    predicted_bytes: int  # their predicted payload size
    total_rel_error: float  # predicted error of the whole update
    budget_met: bool  # whether the latest plan met its budget (True before any plan)
    codec_counts: Mapping[str, int]  # codec name -> tensors assigned to it in the latest plan
    measure_seconds: float  # time the latest plan spent measuring


class CompressionPolicy:
    """Chooses a codec per tensor from measured sizes and errors (see the module docstring)."""

    def __init__(self, config: PolicyConfig, lookup: Callable[[str], Codec] = get_codec) -> None:
        config.validate()
        self.config = config
        codecs: dict[str, Codec] = {}
        for name in config.candidates:
            try:
                codecs[name] = lookup(name)
            except KeyError as error:
                detail = error.args[0] if error.args else ""
                raise ConfigError(f"unknown candidate codec {name!r}: {detail}") from None
        self.codecs: Mapping[str, Codec] = MappingProxyType(codecs)
        self._plan: PolicyPlan | None = None
        self._plans = 0
        self._raw_bytes = 0
        self._measure_seconds = 0.0

    @property
    def last_plan(self) -> PolicyPlan | None:
        """The latest plan with its predictions, or None before the first."""
        return self._plan

    def plan(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
        """Measure every candidate on ``tensors`` and return tensor name -> codec name.

        The full result (predicted bytes and errors, whether the budget was met) is ``last_plan``.
        """
        return dict(self.plan_details(tensors).assignment)

    def plan_details(self, tensors: Mapping[str, torch.Tensor]) -> PolicyPlan:
        """Like ``plan``, returning the ``PolicyPlan`` itself."""
        started = time.perf_counter()
        costs = self.measure(tensors)
        sq_norms = {name: _sq_norm(tensor) for name, tensor in tensors.items()}
        self._measure_seconds = time.perf_counter() - started
        self._plan = decide(costs, sq_norms, self.config)
        self._plans += 1
        self._raw_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        return self._plan

    def measure(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, CandidateCost]]:
        """Tensor name -> candidate name -> measured cost; ``TypeError`` for a non-floating tensor."""
        costs: dict[str, dict[str, CandidateCost]] = {}
        for name, tensor in tensors.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise TypeError(f"tensor {name!r} is not a floating torch.Tensor: only those are compressed")
            local = tensor.detach().to("cpu")
            sample = self._sample(name, local.reshape(-1))
            sq_norm = _sq_norm(local) if sample is not None else 0.0  # only the sampled path needs it
            costs[name] = {
                codec_name: _measure(codec, local, sample, self.config.sample_block, sq_norm)
                for codec_name, codec in self.codecs.items()
            }
        return costs

    def codec_for(self, name: str) -> Codec:
        """The codec the latest plan assigned to tensor ``name``; ``KeyError`` if it has none."""
        if self._plan is None or name not in self._plan.assignment:
            raise KeyError(f"tensor {name!r} is not in the current plan; call plan() with it first")
        return self.codecs[self._plan.assignment[name]]

    def statistics(self) -> PolicyStatistics:
        """Counts and predictions of the latest plan."""
        plan = self._plan
        if plan is None:
            return PolicyStatistics(
                plans=0,
                tensors=0,
                raw_bytes=0,
                predicted_bytes=0,
                total_rel_error=0.0,
                budget_met=True,
                codec_counts=MappingProxyType({}),
                measure_seconds=0.0,
            )
        return PolicyStatistics(
            plans=self._plans,
            tensors=len(plan.assignment),
            raw_bytes=self._raw_bytes,
            predicted_bytes=plan.predicted_bytes,
            total_rel_error=plan.total_rel_error,
            budget_met=plan.budget_met,
            codec_counts=MappingProxyType(dict(Counter(plan.assignment.values()))),
            measure_seconds=self._measure_seconds,
        )

    def _sample(self, name: str, flat: torch.Tensor) -> torch.Tensor | None:
        """A seeded sample of whole, aligned blocks of a large tensor; None for a small one."""
        config = self.config
        if flat.numel() <= config.max_measured_elements:
            return None
        block = config.sample_block
        n_blocks = flat.numel() // block  # >= the count below, as numel > max_measured_elements
        count = config.max_measured_elements // block
        generator = torch.Generator().manual_seed(config.seed ^ zlib.crc32(name.encode()))
        chosen = torch.randperm(n_blocks, generator=generator)[:count].sort().values
        return flat[: n_blocks * block].view(n_blocks, block)[chosen].reshape(-1)


def decide(
    costs: Mapping[str, Mapping[str, CandidateCost]], sq_norms: Mapping[str, float], config: PolicyConfig
) -> PolicyPlan:
    """The decision rule alone: pick one candidate per tensor from measured ``costs``.

    ``sq_norms`` (tensor name -> ``||x||^2``) only enters ``total_rel_error``; the byte-budget
    objective is each candidate's ``sq_error``. Candidates with a non-finite error are used only
    when a tensor has nothing else.
    """
    config.validate()
    if config.error_budget is not None:
        within = {name: _within_error(options, config.error_budget) for name, options in costs.items()}
        met = all(costs[name][choice].rel_error <= config.error_budget for name, choice in within.items())
        return _make_plan(costs, sq_norms, within, met)
    assert config.byte_budget is not None  # validate() guarantees one budget
    optimal = _knapsack(costs, config.byte_budget, config.dp_buckets)
    # None: even the cheapest choice of every tensor is over the budget, rounded up to units.
    assignment = optimal if optimal is not None else {name: _cheapest(options) for name, options in costs.items()}
    total = sum(costs[name][choice].nbytes for name, choice in assignment.items())
    if total > config.byte_budget:
        return _make_plan(costs, sq_norms, assignment, False)
    return _make_plan(costs, sq_norms, _fill_slack(costs, assignment, config.byte_budget), True)


def _within_error(options: Mapping[str, CandidateCost], budget: float) -> str:
    """The smallest payload within ``budget``, else the most accurate candidate."""
    fitting = {c: cost for c, cost in options.items() if cost.rel_error <= budget}
    if fitting:
        return _cheapest(fitting)
    return min(options, key=lambda c: (options[c].rel_error, options[c].nbytes))


def _cheapest(options: Mapping[str, CandidateCost]) -> str:
    """The smallest payload; the more accurate of equal ones; the first listed of equal both."""
    return min(options, key=lambda c: _cheapest_first(options[c]))


def _cheapest_first(cost: CandidateCost) -> tuple[int, float]:
    return cost.nbytes, cost.sq_error


def _knapsack(costs: Mapping[str, Mapping[str, CandidateCost]], budget: int, buckets: int) -> dict[str, str] | None:
    """Minimise the summed ``sq_error`` with total bytes <= ``budget``; None when nothing fits.

    ``dp[b]`` is the least error of the layers so far using at most ``b`` units; per layer it
    becomes ``min_c dp[b - w_c] + e_c``, vectorised over ``b``. Candidates are tried cheapest
    first with a strict ``<``, and dominated ones (no cheaper and no more accurate than another)
    are dropped, so ties go to the smaller payload.
    """
    unit = max(1, -(-budget // buckets))
    capacity = budget // unit
    names = list(costs)
    layers = [_frontier(costs[name]) for name in names]
    dp = np.zeros(capacity + 1)
    widest = max((len(options) for options in layers), default=0)
    choices = np.full((len(names), capacity + 1), -1, dtype=np.int8 if widest < 128 else np.int32)
    for index, options in enumerate(layers):
        best = np.full(capacity + 1, np.inf)
        for position, (_, cost) in enumerate(options):
            weight = -(-cost.nbytes // unit)
            if weight > capacity:
                break  # options are sorted by size: the rest are larger still
            candidate = dp[: capacity + 1 - weight] + cost.sq_error
            better = candidate < best[weight:]
            best[weight:][better] = candidate[better]
            choices[index, weight:][better] = position
        dp = best
    if not np.isfinite(dp[capacity]):
        return None
    assignment: dict[str, str] = {}
    remaining = capacity
    for index in reversed(range(len(names))):
        codec_name, cost = layers[index][int(choices[index, remaining])]
        assignment[names[index]] = codec_name
        remaining -= -(-cost.nbytes // unit)
    return {name: assignment[name] for name in names}


def _fill_slack(
    costs: Mapping[str, Mapping[str, CandidateCost]], assignment: dict[str, str], budget: int
) -> dict[str, str]:
    """Spend the bytes the DP's rounding left unused on the upgrades with the most error saved per byte."""
    slack = budget - sum(costs[name][choice].nbytes for name, choice in assignment.items())
    upgrades = []
    for name, choice in assignment.items():
        current = costs[name][choice]
        for codec_name, cost in _frontier(costs[name]):
            extra, saved = cost.nbytes - current.nbytes, current.sq_error - cost.sq_error
            if 0 < extra <= slack and saved > 0:
                upgrades.append((saved / extra, name, codec_name))
    for _, name, codec_name in sorted(upgrades, key=lambda u: -u[0]):
        current, cost = costs[name][assignment[name]], costs[name][codec_name]
        extra = cost.nbytes - current.nbytes
        if cost.sq_error < current.sq_error and extra <= slack:
            assignment[name] = codec_name
            slack -= extra
    return assignment


def _frontier(options: Mapping[str, CandidateCost]) -> list[tuple[str, CandidateCost]]:
    """The finite-error candidates no other beats on both size and error, cheapest first."""
    finite = sorted(
        ((c, cost) for c, cost in options.items() if math.isfinite(cost.sq_error)), key=lambda o: _cheapest_first(o[1])
    )
    frontier: list[tuple[str, CandidateCost]] = []
    for codec_name, cost in finite:
        if not frontier or cost.sq_error < frontier[-1][1].sq_error:
            frontier.append((codec_name, cost))
    return frontier


def _make_plan(
    costs: Mapping[str, Mapping[str, CandidateCost]],
    sq_norms: Mapping[str, float],
    assignment: dict[str, str],
    budget_met: bool,
) -> PolicyPlan:
    chosen = {name: costs[name][codec_name] for name, codec_name in assignment.items()}
    total_sq_norm = sum(sq_norms.get(name, 0.0) for name in assignment)
    total_sq_error = sum(cost.sq_error for cost in chosen.values())
    if total_sq_norm > 0:
        total_rel_error = math.sqrt(total_sq_error / total_sq_norm)
    else:
        total_rel_error = 0.0 if total_sq_error == 0 else math.inf
    return PolicyPlan(
        assignment=MappingProxyType(assignment),
        predicted_bytes=sum(cost.nbytes for cost in chosen.values()),
        predicted_errors=MappingProxyType({name: cost.rel_error for name, cost in chosen.items()}),
        budget_met=budget_met,
        tensor_bytes=MappingProxyType({name: cost.nbytes for name, cost in chosen.items()}),
        total_rel_error=total_rel_error,
    )


def _measure(
    codec: Codec, tensor: torch.Tensor, sample: torch.Tensor | None, block: int, full_sq_norm: float
) -> CandidateCost:
    """Round-trip ``tensor`` (or its sample, then ``full_sq_norm`` is ``||tensor||^2``) through ``codec``."""
    if sample is None:
        payload = codec.encode(tensor)
        sq_error, sq_norm = _round_trip_error(codec, payload, tensor)
        rel_error, sq_error = _errors(sq_error, sq_norm)
        return CandidateCost(nbytes=len(payload), rel_error=rel_error, sq_error=sq_error)
    payload = codec.encode(sample)
    sq_error, sq_norm = _round_trip_error(codec, payload, sample)
    # Affine fit bytes = header + per_block * blocks, from the sample and its first block alone.
    blocks = sample.numel() // block
    one_block = len(codec.encode(sample[:block]))
    per_block = (len(payload) - one_block) / (blocks - 1)
    nbytes = round(one_block - per_block + per_block * tensor.numel() / block)
    nbytes += _SHAPE_FIELD * (tensor.dim() - 1)  # the sample is 1-D; the header holds one u64 per dimension
    rel_error, sq_error = _errors(sq_error, sq_norm)
    scaled = rel_error**2 * full_sq_norm if full_sq_norm > 0 else sq_error
    return CandidateCost(nbytes=nbytes, rel_error=rel_error, sq_error=scaled, sampled=True)


def _round_trip_error(codec: Codec, payload: bytes, x: torch.Tensor) -> tuple[float, float]:
    """``||x - decode(payload)||^2`` and ``||x||^2``, in float64."""
    decoded = codec.decode(payload, max_elements=x.numel()).reshape(-1)
    flat = x.reshape(-1).double()
    return float((flat - decoded.double()).square().sum()), float(flat.square().sum())


def _errors(sq_error: float, sq_norm: float) -> tuple[float, float]:
    """(relative error, squared error); a zero tensor has relative error 0 if decoded exactly, else inf."""
    if not math.isfinite(sq_error):
        return math.inf, math.inf
    if sq_norm > 0:
        return math.sqrt(sq_error / sq_norm), sq_error
    return (0.0 if sq_error == 0 else math.inf), sq_error


def _sq_norm(tensor: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(tensor.detach(), dtype=torch.float64)) ** 2


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
