"""K data-parallel replicas in one process: DDP, DiLoCo, Streaming DiLoCo and a lone worker.

The math is the library's: every replica is a ``swarmnet.diloco.Replica`` (its AdamW, schedule and
outer Nesterov step), and pseudo-gradients go through the real ``swarmnet.compression`` codecs. What
is simulated is only the network. A sync of one fragment does what the averaging engine does:

1. every replica encodes its pseudo-gradient, through its own sender-side ``ErrorFeedback`` when
   the codec is lossy (``error_feedback``);
2. the mean of the decoded payloads is encoded once more, through a reducer-side ``ErrorFeedback``,
   and decoded;
3. every replica applies that same decoded average, so all keep identical global state.

Bytes a replica sends for one sync: ``2 (K - 1) / K`` times its payload length (butterfly
reduce-scatter plus all-gather). DDP is the same exchange of the gradient every step, codec
``none`` (fp32 plus the 32-byte wire header).

Streaming DiLoCo's overlap: the average of a fragment whose sync starts after inner step ``t`` is
computed then and applied after step ``t + overlap_steps``, while inner steps go on.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from swarmnet.compression import Codec, ErrorFeedback, get_codec
from swarmnet.data import DataConfig, TextData
from swarmnet.data.text import Batch
from swarmnet.diloco.config import DiLoCoConfig, InnerConfig, OuterConfig
from swarmnet.diloco.replica import Replica
from swarmnet.models import GPT, preset

__all__ = ["METHODS", "Budget", "Exchange", "RunResult", "RunSpec", "load_data", "simulate", "wire_factor"]

METHODS = ("ddp", "diloco", "streaming", "single")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One method and its settings."""

    name: str
    method: str  # one of METHODS
    inner_steps: int | None = None  # H (diloco, streaming)
    fragments: int | None = None  # P (streaming)
    overlap_steps: int = 0  # tau: inner steps a fragment's exchange overlaps
    mixing: float = 0.0  # alpha: share of the local fragment kept when the new global one arrives
    codec: str = "none"  # registry name of the wire codec
    error_feedback: bool = False  # sender- and reducer-side error feedback (lossy codecs)
    lr: float = 3e-3  # peak AdamW lr (inner optimizer, or DDP's optimizer)
    outer_lr: float = 0.7
    outer_momentum: float = 0.9


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What every method gets: model, data, replicas and inner steps per replica."""

    steps: int = 600  # inner steps per replica (the token budget is replicas * steps * batch * context)
    replicas: int = 4  # K
    preset: str = "debug"
    corpus: str = "kjv"
    batch_size: int = 8  # sequences per replica per step
    warmup_fraction: float = 0.05  # linear warm-up, then cosine to min_lr_ratio
    min_lr_ratio: float = 0.1
    curve_points: int = 6  # evaluations along the run (the last one is the final loss)
    seed: int = 0  # model initialisation (the same for every method)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What one run measured (JSON-ready through ``dataclasses.asdict``)."""

    name: str
    method: str
    H: int | None  # the papers' name for inner steps per round
    codec: str
    fragments: int | None
    overlap_steps: int | None
    mixing: float | None
    error_feedback: bool
    lr: float
    outer_lr: float | None
    outer_momentum: float | None
    replicas: int  # replicas that trained (1 for ``single``)
    steps: int  # inner steps per replica
    params: int
    tokens: int  # over all replicas
    val_loss: float
    bytes_per_replica: float  # the most any one replica sent
    peak_sync_bytes: float  # the largest single sync's bytes sent by one replica
    syncs: int  # exchanges (fragment syncs when streaming, steps for DDP)
    wall_s: float
    curve: list[list[float]]  # [tokens so far, val loss]
    digests: list[str] = field(default_factory=list)  # Replica.state_digest() of every replica at the end


def wire_factor(replicas: int) -> float:
    """Share of its payload a replica sends in a butterfly all-reduce: ``2 (K - 1) / K``."""
    return 2 * (replicas - 1) / replicas


class Exchange:
    """The simulated all-reduce of one vector per replica, through a real codec, counting bytes."""

    def __init__(self, codec: str, replicas: int, *, error_feedback: bool) -> None:
        self.codec: Codec = get_codec(codec)
        self.factor = wire_factor(replicas)
        self._senders = [ErrorFeedback() for _ in range(replicas)] if error_feedback else None
        self._reducer = ErrorFeedback() if error_feedback else None
        self.sent = [0.0] * replicas
        self.peak = 0.0
        self.syncs = 0

    def average(self, values: Sequence[torch.Tensor], key: str) -> torch.Tensor:
        """The decoded average every replica applies; counts what each replica sends."""
        total = torch.zeros(values[0].numel())
        for index, value in enumerate(values):
            sender = self._senders[index] if self._senders is not None else None
            payload = self._encode(sender, key, value)
            self.codec.decode_accumulate(payload, total, alpha=1 / len(values))
            self.sent[index] += self.factor * len(payload)
            self.peak = max(self.peak, self.factor * len(payload))
        self.syncs += 1
        reduced = self._encode(self._reducer, f"reduce/{key}", total)
        return self.codec.decode(reduced, max_elements=total.numel()).reshape(-1)

    def _encode(self, feedback: ErrorFeedback | None, key: str, value: torch.Tensor) -> bytes:
        flat = value.reshape(-1)
        return self.codec.encode(flat) if feedback is None else feedback.encode(key, flat, self.codec)


def load_data(budget: Budget) -> TextData:
    """The corpus, cut into windows of the model's context."""
    config = DataConfig(corpus=budget.corpus, seq_len=preset(budget.preset).context, batch_size=budget.batch_size)
    return TextData(config)


def initial_model(budget: Budget) -> GPT:
    """The seeded initial model every method and every replica starts from."""
    torch.manual_seed(budget.seed)
    return GPT(preset(budget.preset))


def diloco_config(spec: RunSpec, budget: Budget) -> DiLoCoConfig:
    """The library config of ``spec`` (DDP and ``single`` use only its inner optimizer)."""
    inner = InnerConfig(
        lr=spec.lr,
        warmup_steps=round(budget.warmup_fraction * budget.steps),
        total_steps=budget.steps,
        min_lr_ratio=budget.min_lr_ratio,
    )
    return DiLoCoConfig(
        inner_steps=spec.inner_steps or budget.steps,
        fragments=spec.fragments or 1,
        overlap_steps=spec.overlap_steps,
        mixing=spec.mixing,
        codec=spec.codec,
        inner=inner,
        outer=OuterConfig(lr=spec.outer_lr, momentum=spec.outer_momentum),
    )


class _Curve:
    """Validation loss at ``points`` evenly spaced steps (the last one is taken by ``finish``)."""

    def __init__(self, budget: Budget, tokens_per_step: int, evaluate: Callable[[], float]) -> None:
        points = max(1, budget.curve_points)
        self.steps = {round(i * budget.steps / points) for i in range(1, points)} - {0, budget.steps}
        self.tokens_per_step, self.evaluate = tokens_per_step, evaluate
        self.points: list[list[float]] = []

    def after(self, step: int) -> None:
        if step in self.steps:
            self.points.append([step * self.tokens_per_step, self.evaluate()])

    def finish(self, step: int) -> float:
        loss = self.evaluate()
        self.points.append([step * self.tokens_per_step, loss])
        return loss


@dataclass(frozen=True)
class _InFlight:
    due: int  # the inner step after which the average is applied
    fragment: int
    average: torch.Tensor


def simulate(spec: RunSpec, budget: Budget, data: TextData) -> RunResult:
    """Run ``spec`` on ``budget`` and measure it."""
    if spec.method not in METHODS:
        raise ValueError(f"unknown method {spec.method!r}; known: {', '.join(METHODS)}")
    started = time.perf_counter()
    run = _ddp if spec.method == "ddp" else _replicas
    replicas, exchange, curve = run(spec, budget, data)
    val_loss = curve.finish(budget.steps)
    return _result(spec, budget, replicas, exchange, curve, val_loss, time.perf_counter() - started)


def _replicas(spec: RunSpec, budget: Budget, data: TextData) -> tuple[list[Replica], Exchange, _Curve]:
    """DiLoCo, Streaming DiLoCo, or (``single``) one replica alone on its shard with no sync."""
    count = 1 if spec.method == "single" else budget.replicas
    config = diloco_config(spec, budget)
    base = initial_model(budget)
    replicas = [Replica(copy.deepcopy(base), config) for _ in range(count)]
    samplers = [data.sampler(k, budget.replicas) for k in range(count)]
    exchange = Exchange(spec.codec, count, error_feedback=spec.error_feedback)
    validation = data.validation_batches()
    use_global = spec.method != "single"
    evaluate = lambda: replicas[0].evaluate(validation, use_global=use_global)  # noqa: E731
    curve = _Curve(budget, count * _batch_tokens(data), evaluate)
    inflight: list[_InFlight] = []
    for step in range(1, budget.steps + 1):
        for replica, sampler in zip(replicas, samplers, strict=True):
            replica.inner_step(sampler.batch(replica.step))
        if use_global:
            inflight = _sync(replicas, exchange, inflight, step)
        curve.after(step)
    for item in inflight:  # exchanges still in flight when training stops land before the final evaluation
        _apply(replicas, item)
    return replicas, exchange, curve


def _sync(replicas: list[Replica], exchange: Exchange, inflight: list[_InFlight], step: int) -> list[_InFlight]:
    """Apply the averages due after ``step``, then start the syncs the schedule puts there."""
    config = replicas[0].config
    for item in inflight:
        if item.due == step:
            _apply(replicas, item)
    waiting = [item for item in inflight if item.due != step]
    for fragment in config.syncs_after(step):
        average = exchange.average([r.pseudo_gradient(fragment) for r in replicas], key=f"fragment/{fragment}")
        item = _InFlight(step + config.overlap_steps, fragment, average)
        if config.overlap_steps == 0:
            _apply(replicas, item)
        else:
            waiting.append(item)
    return waiting


def _apply(replicas: list[Replica], item: _InFlight) -> None:
    for replica in replicas:
        replica.apply_outer(item.average, item.fragment)


def _ddp(spec: RunSpec, budget: Budget, data: TextData) -> tuple[list[Replica], Exchange, _Curve]:
    """Per-step data parallelism: K gradients averaged every step, one AdamW (the replicas stay equal,
    so one model stands for all of them)."""
    replica = Replica(initial_model(budget), diloco_config(spec, budget))
    samplers = [data.sampler(k, budget.replicas) for k in range(budget.replicas)]
    exchange = Exchange(spec.codec, budget.replicas, error_feedback=spec.error_feedback)
    validation = data.validation_batches()
    tokens = budget.replicas * _batch_tokens(data)
    curve = _Curve(budget, tokens, lambda: replica.evaluate(validation, use_global=False))
    params = list(replica.model.parameters())
    for step in range(1, budget.steps + 1):
        gradients = [_gradient(replica.model, params, sampler.batch(replica.step)) for sampler in samplers]
        _ddp_step(replica, params, exchange.average(gradients, key="gradient"))
        curve.after(step)
    with torch.no_grad():
        replica.global_params.copy_(replica.flat.vector)  # so evaluate() and state_digest() see the model
    return [replica], exchange, curve


def _gradient(model: nn.Module, params: list[nn.Parameter], batch: Batch) -> torch.Tensor:
    """One replica's flat gradient on its batch."""
    model.train()
    for param in params:
        param.grad = None
    loss = model.loss(*batch)  # type: ignore[operator]
    loss.backward()
    return torch.cat([_grad(p).reshape(-1) for p in params])


def _grad(param: nn.Parameter) -> torch.Tensor:
    return param.grad if param.grad is not None else torch.zeros_like(param)


def _ddp_step(replica: Replica, params: list[nn.Parameter], average: torch.Tensor) -> None:
    """AdamW on the averaged gradient, with the replica's schedule and clipping."""
    offset = 0
    for param in params:
        param.grad = average[offset : offset + param.numel()].view_as(param).clone()
        offset += param.numel()
    inner = replica.config.inner
    for group in replica.optimizer.param_groups:
        group["lr"] = inner.lr_at(replica.step)
    if inner.grad_clip > 0:
        nn.utils.clip_grad_norm_(params, inner.grad_clip)
    replica.optimizer.step()
    replica.step += 1


def _batch_tokens(data: TextData) -> int:
    return data.config.batch_size * data.config.seq_len


def _result(
    spec: RunSpec,
    budget: Budget,
    replicas: list[Replica],
    exchange: Exchange,
    curve: _Curve,
    val_loss: float,
    wall: float,
) -> RunResult:
    streaming, local = spec.method == "streaming", spec.method in ("diloco", "streaming")
    return RunResult(
        name=spec.name,
        method=spec.method,
        H=spec.inner_steps if local else None,
        codec=spec.codec,
        fragments=spec.fragments if streaming else None,
        overlap_steps=spec.overlap_steps if streaming else None,
        mixing=spec.mixing if streaming else None,
        error_feedback=spec.error_feedback,
        lr=spec.lr,
        outer_lr=spec.outer_lr if local else None,
        outer_momentum=spec.outer_momentum if local else None,
        replicas=1 if spec.method == "single" else budget.replicas,
        steps=budget.steps,
        params=replicas[0].flat.numel,
        tokens=int(curve.points[-1][0]),
        val_loss=val_loss,
        bytes_per_replica=max(exchange.sent),
        peak_sync_bytes=exchange.peak,
        syncs=exchange.syncs,
        wall_s=round(wall, 2),
        curve=curve.points,
        digests=[r.state_digest() for r in replicas],
    )
