"""The daemon's ``trainer`` role: build the model, data and DiLoCo replica, train on the swarm, report.

Everything a trainer peer does beyond the protocol lives here: choosing its data shard, resuming
from its last checkpoint, saving checkpoints every few syncs, showing progress, and writing a
summary (validation loss before and after, a text sample, bytes sent against what per-step
data-parallel all-reduce would have sent) when it stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from swarmnet.averaging import AveragingConfig, MatchmakingConfig
from swarmnet.data import DataConfig, TextData
from swarmnet.diloco import DiLoCoConfig, Progress, Replica, SwarmTrainer, TrainerConfig
from swarmnet.diloco.checkpoint import CheckpointConfig
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.models import GPT, preset
from swarmnet.peers.telemetry import PeerTelemetry
from swarmnet.peers.trainer_checkpoints import restore, save
from swarmnet.peers.trainer_progress import ProgressDisplay, ProgressMode
from swarmnet.transport.base import Transport

__all__ = ["TrainerRoleConfig", "TrainerSummary", "run_trainer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainerRoleConfig:
    """What a trainer peer trains, on which data, and how it reports."""

    run: str = "main"
    preset: str = "debug"
    corpus: str = "kjv"
    batch_size: int = 8
    shards: int = 8  # the training text is cut into this many shards
    shard: int | None = None  # ours; None picks one from the peer id
    seed: int = 0  # initial weights: every trainer of a run must use the same seed
    diloco: DiLoCoConfig = field(default_factory=DiLoCoConfig)
    max_steps: int | None = None
    group_wait: float = 1.0  # seconds a group waits for more trainers before it averages
    pace_mbps: float | None = None  # cap on the sending rate while syncing (AveragingConfig.pace_mbps)
    eval_every: int = 0  # evaluate the global model every this many syncs (0: only at start and end)
    checkpoint: CheckpointConfig | None = None
    resume: bool = False
    threads: int | None = None  # torch threads; None keeps torch's default
    progress: ProgressMode = "auto"
    summary_path: Path | None = None
    sample_bytes: int = 200  # length of the generated text sample in the summary

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        preset(self.preset)
        self.diloco.validate()
        if self.shards < 1 or (self.shard is not None and not 0 <= self.shard < self.shards):
            raise ConfigError(f"shard {self.shard} is not in [0, {self.shards})")
        if self.batch_size < 1 or self.group_wait <= 0 or (self.threads is not None and self.threads < 1):
            raise ConfigError("batch_size, group_wait and threads must be positive")
        if self.pace_mbps is not None and not self.pace_mbps > 0:
            raise ConfigError(f"--pace-mbps must be positive, got {self.pace_mbps}")
        if self.resume and self.checkpoint is None:
            raise ConfigError("--resume needs a checkpoint directory")
        if self.checkpoint is not None:
            self.checkpoint.validate()

    def schema(self) -> str:
        """Id of the model layout and sync schedule: trainers exchange state only when these match."""
        d = self.diloco
        described = json.dumps([asdict(preset(self.preset)), self.seed, d.inner_steps, d.fragments, d.codec])
        return hashlib.sha256(described.encode()).hexdigest()[:32]


@dataclass(frozen=True, kw_only=True)
class TrainerSummary:
    """What a trainer reports when it stops (also written as JSON to ``summary_path``)."""

    peer_id: str
    run: str
    parameters: int
    steps: int
    rounds: int
    val_loss_before: float
    val_loss_after: float | None  # None when stopped early: the validation pass is skipped to leave at once
    bytes_sent: int
    bytes_received: int
    allreduce_bytes: int  # what per-step fp32 all-reduce in a group of the same size would have sent
    state_fetches: int
    group_sizes: list[int]
    digest: str  # of the global state: equal on every trainer that ended in sync
    sample: str


async def run_trainer(
    transport: Transport,
    identity: Identity,
    config: TrainerRoleConfig,
    stop: asyncio.Event,
    telemetry: PeerTelemetry | None = None,
) -> TrainerSummary:
    """Train until ``stop`` or ``max_steps``; returns (and writes) the summary. ``telemetry`` sees every event."""
    config.validate()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    model_config = preset(config.preset)
    data = TextData(DataConfig(corpus=config.corpus, seq_len=model_config.context, batch_size=config.batch_size))
    torch.manual_seed(config.seed)
    replica = Replica(GPT(model_config), config.diloco)
    shard = config.shard if config.shard is not None else int(identity.peer_id.encode().hex(), 16) % config.shards
    validation = data.validation_batches()
    display = ProgressDisplay(config.progress, total=config.max_steps)
    on_progress: Callable[[Progress], None] = display.update
    if telemetry is not None:
        telemetry.samples_per_step = config.batch_size
        on_progress = _both(display.update, telemetry.observe)
    trainer = SwarmTrainer(
        transport, identity, replica, data.sampler(shard, config.shards), _trainer_config(config),
        validation=validation, on_progress=on_progress, on_sync=_checkpointer(config),
    )  # fmt: skip
    if config.resume and config.checkpoint is not None:
        restore(trainer, config.checkpoint)  # the replica and its averagers' residuals
    val_before = await asyncio.to_thread(replica.evaluate, validation)
    logger.info(
        "trainer %s: %s (%d parameters), shard %d/%d, H=%d, codec %s, fragments %d",
        identity.peer_id[:12], config.preset, replica.flat.numel, shard, config.shards,
        config.diloco.inner_steps, config.diloco.codec, config.diloco.fragments,
    )  # fmt: skip
    try:
        await trainer.start()
        await trainer.run(stop)
    finally:
        display.close()
        if telemetry is not None:
            telemetry.state = "idle"
    if config.checkpoint is not None and replica.rounds % config.checkpoint.every_rounds:
        await asyncio.to_thread(save, trainer, config.checkpoint)  # the last sync's state was not saved yet
    # Stopped by a signal: leave at once, without the validation pass and the text sample.
    summary = await _summarize(trainer, identity, config, val_before, validation if not stop.is_set() else None)
    if config.summary_path is not None:
        config.summary_path.write_text(json.dumps(asdict(summary), indent=2))
    return summary


def _trainer_config(config: TrainerRoleConfig) -> TrainerConfig:
    matchmaking = MatchmakingConfig(target_group_size=64, min_group_size=1, min_wait=config.group_wait, timeout=30.0)
    return TrainerConfig(
        run=config.run, schema=config.schema(), max_steps=config.max_steps, eval_every=config.eval_every,
        averaging=AveragingConfig(run=config.run, pace_mbps=config.pace_mbps, matchmaking=matchmaking),
    )  # fmt: skip


def _both(first: Callable[[Progress], None], second: Callable[[Progress], None]) -> Callable[[Progress], None]:
    def both(progress: Progress) -> None:
        first(progress)
        second(progress)

    return both


def _checkpointer(config: TrainerRoleConfig) -> Any:
    checkpoint = config.checkpoint
    if checkpoint is None:
        return None

    def on_sync(trainer: SwarmTrainer) -> None:
        if trainer.replica.rounds % checkpoint.every_rounds == 0:
            save(trainer, checkpoint)

    return on_sync


async def _summarize(
    trainer: SwarmTrainer,
    identity: Identity,
    config: TrainerRoleConfig,
    val_before: float,
    validation: list[Any] | None,
) -> TrainerSummary:
    """The run's summary; ``validation`` None skips the closing evaluation and text sample."""
    replica = trainer.replica
    val_after, sample = None, ""
    if validation is not None:
        val_after = await asyncio.to_thread(replica.evaluate, validation)
        sample = await asyncio.to_thread(_sample, replica, config.sample_bytes)
    stats = trainer.statistics()
    sizes = [len(o.members) for o in trainer.outcomes]
    group = max(sizes, default=1)
    # Per-step data-parallel: every inner step, a butterfly all-reduce of fp32 gradients sends 2(N-1)/N x 4P bytes.
    allreduce = int(replica.step * 2 * (group - 1) / group * 4 * replica.flat.numel)
    return TrainerSummary(
        peer_id=identity.peer_id, run=config.run, parameters=replica.flat.numel, steps=replica.step,
        rounds=replica.rounds, val_loss_before=val_before, val_loss_after=val_after,
        bytes_sent=stats.bytes_sent, bytes_received=stats.bytes_received,
        allreduce_bytes=allreduce, state_fetches=trainer.fetches, group_sizes=sizes, digest=replica.state_digest(),
        sample=sample,
    )  # fmt: skip


def _sample(replica: Replica, length: int) -> str:
    replica.flat.vector.copy_(replica.global_params)
    text = replica.model.generate(b"And God said", length, seed=0)  # type: ignore[operator]
    return "And God said" + bytes(text).decode("utf-8", errors="replace")
