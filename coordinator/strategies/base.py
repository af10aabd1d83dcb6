"""What every strategy shares: client updates, the server state, the config and input checks.

A round of federated training hands the coordinator one ``ClientUpdate`` per client: the client's
adapter delta (local minus global, flat float32) and how many samples it trained on. A strategy is
two plain functions over these: an *aggregation rule* turns the updates into one vector, and a
*server optimizer* applies that vector to the global parameters (Reddi et al. 2021, "Adaptive
Federated Optimization": the aggregate is a pseudo-gradient pointing downhill, so optimizers *add*
it). The optimizer's moments live in an immutable ``ServerState`` the caller keeps and passes back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeGuard, get_args

import torch

from swarmnet.averaging.robust import AggregationConfig
from swarmnet.coordinator.strategies.weights import cap_weights
from swarmnet.errors import ConfigError

__all__ = [
    "AggregationName",
    "ClientUpdate",
    "OptimizerName",
    "ServerState",
    "StrategyConfig",
    "adaptive_params",
    "check_step_inputs",
    "check_updates",
    "load_moments",
    "stack_updates",
]

AggregationName = Literal["mean", "trimmed_mean", "centered_clip"]
OptimizerName = Literal["sgd", "adam", "yogi"]


@dataclass(frozen=True)
class ClientUpdate:
    """One client's contribution to a round."""

    client_id: str
    delta: torch.Tensor  # float32, 1-D: the client's adapter after local training minus the global one
    samples: int  # > 0: examples the client says it trained on; its weight, capped (weights.py)


@dataclass(frozen=True)
class ServerState:
    """The server optimizer's state between rounds; ``tensors`` is saveable as safetensors by name.

    Treat ``tensors`` as read-only: every step returns a new state with new tensors.
    """

    step: int = 0  # server steps taken so far
    tensors: Mapping[str, torch.Tensor] = field(default_factory=dict)  # adam/yogi: "m" and "v"


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """How updates are aggregated and applied; ``validate()`` raises ``ConfigError``."""

    aggregation: AggregationName = "mean"  # see swarmnet.averaging.robust for each rule
    trim_fraction: float = 0.2  # trimmed_mean: share dropped at each end (at least 1 for k >= 3)
    clip_tau: float | None = None  # centered_clip radius; None = median distance from the start
    clip_iterations: int = 3  # centered_clip iterations
    server_optimizer: OptimizerName = "sgd"  # sgd with server_lr 1 is FedAvg
    server_lr: float = 1.0  # eta in Reddi et al.
    beta1: float = 0.9  # adam/yogi first-moment decay
    beta2: float = 0.99  # adam/yogi second-moment decay
    tau: float = 1e-3  # adam/yogi adaptivity: added to sqrt(v), and v starts at tau^2

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.aggregation not in get_args(AggregationName):
            raise ConfigError(f"unknown aggregation {self.aggregation!r}; expected one of {get_args(AggregationName)}")
        self.robust_config().validate()
        if self.server_optimizer not in get_args(OptimizerName):
            raise ConfigError(
                f"unknown server_optimizer {self.server_optimizer!r}; expected one of {get_args(OptimizerName)}"
            )
        _check_positive("server_lr", self.server_lr)
        _check_positive("tau", self.tau)
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if not (_is_real(beta) and 0.0 <= beta < 1.0):
                raise ConfigError(f"{name} must be in [0, 1), got {beta!r}")

    def robust_config(self) -> AggregationConfig:
        """The ``swarmnet.averaging.robust`` configuration of this strategy's aggregation rule."""
        return AggregationConfig(
            rule=self.aggregation,
            trim_fraction=self.trim_fraction,
            clip_tau=self.clip_tau,
            clip_iterations=self.clip_iterations,
        )


def _is_real(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_positive(name: str, value: object) -> None:
    if not (_is_real(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


def check_updates(updates: Sequence[ClientUpdate], length: int | None = None) -> None:
    """Raise ``ValueError`` unless ``updates`` is a non-empty list of valid, distinct updates.

    Every delta must be a finite float32 1-D tensor of ``length`` elements (``None``: the first
    update's length), every ``samples`` an int > 0, and no client id may appear twice.
    """
    if len(updates) == 0:
        raise ValueError("no client updates to aggregate")
    expected = _delta_length(updates[0]) if length is None else length
    seen: set[str] = set()
    for update in updates:
        _check_update(update, expected)
        if update.client_id in seen:
            raise ValueError(f"client {update.client_id!r} sent more than one update")
        seen.add(update.client_id)


def _delta_length(update: ClientUpdate) -> int:
    delta = getattr(update, "delta", None)
    return delta.numel() if isinstance(delta, torch.Tensor) else -1


def _check_update(update: ClientUpdate, length: int) -> None:
    if not isinstance(update, ClientUpdate):
        raise ValueError(f"expected a ClientUpdate, got {type(update).__name__}")
    who = f"update from {update.client_id!r}"
    if not isinstance(update.client_id, str) or not update.client_id:
        raise ValueError(f"client_id must be a non-empty str, got {update.client_id!r}")
    delta = update.delta
    if not isinstance(delta, torch.Tensor) or delta.dtype != torch.float32 or delta.dim() != 1:
        got = f"{delta.dtype} {list(delta.shape)}" if isinstance(delta, torch.Tensor) else type(delta).__name__
        raise ValueError(f"{who}: delta must be a 1-D float32 tensor, got {got}")
    if delta.numel() != length:
        raise ValueError(f"{who}: delta has {delta.numel()} elements, expected {length}")
    if not bool(torch.isfinite(delta).all()):
        raise ValueError(f"{who}: delta contains NaN or Inf")
    if isinstance(update.samples, bool) or not isinstance(update.samples, int) or update.samples <= 0:
        raise ValueError(f"{who}: samples must be an int > 0, got {update.samples!r}")


def stack_updates(updates: Sequence[ClientUpdate]) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked updates as ``(deltas [k, n] float32, weights [k] float64)``, rows sorted by client id.

    The weights are the claimed samples capped at twice the round's median claim (``weights.py``):
    every rule weighs clients through here, so no claim lets one client dominate any of them.
    Sorting makes every rule bit-for-bit independent of the order the updates arrived in (float
    sums are not associative).
    """
    check_updates(updates)
    ordered = sorted(updates, key=lambda u: u.client_id)
    deltas = torch.stack([u.delta for u in ordered])
    samples = torch.tensor([float(u.samples) for u in ordered], dtype=torch.float64)
    return deltas, cap_weights(samples)


def check_step_inputs(params: torch.Tensor, aggregate: torch.Tensor, state: ServerState) -> None:
    """Raise ``ValueError`` unless ``params`` and ``aggregate`` are finite float32 1-D and of one size."""
    for name, tensor in (("params", params), ("aggregate", aggregate)):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32 or tensor.dim() != 1:
            got = f"{tensor.dtype} {list(tensor.shape)}" if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} must be a 1-D float32 tensor, got {got}")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} contains NaN or Inf")
    if aggregate.shape != params.shape:
        raise ValueError(f"aggregate has {aggregate.numel()} elements, params {params.numel()}")
    if not isinstance(state, ServerState):
        raise ValueError(f"state must be a ServerState, got {type(state).__name__}")


def load_moments(
    state: ServerState, params: torch.Tensor, config: StrategyConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam/Yogi moments ``(m, v)`` from ``state``, or ``(0, tau^2)`` if it holds none yet.

    Reddi et al. start from ``m = 0`` and ``v >= tau^2``; we take ``v = tau^2``, so the first step
    is not divided by ``tau`` alone. Raises ``ValueError`` for moments of the wrong size or dtype.
    """
    tensors = state.tensors
    if "m" not in tensors and "v" not in tensors:
        return torch.zeros_like(params), torch.full_like(params, config.tau**2)
    moments = []
    for name in ("m", "v"):
        tensor = tensors.get(name)
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32 or tensor.shape != params.shape:
            raise ValueError(f"server state {name!r} must be a float32 tensor of {params.numel()} elements")
        moments.append(tensor)
    m, v = moments
    if bool((v < 0).any()):
        raise ValueError("server state 'v' must be non-negative")
    return m, v


def adaptive_params(params: torch.Tensor, m: torch.Tensor, v: torch.Tensor, config: StrategyConfig) -> torch.Tensor:
    """``params + server_lr * m / (sqrt(v) + tau)``: the FedAdam and FedYogi parameter update."""
    return params + config.server_lr * m / (v.sqrt() + config.tau)
