"""Trainers of a tiny GPT on the in-memory transport, for DiLoCo tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import torch

from swarmnet.averaging import AveragingConfig, MatchmakingConfig
from swarmnet.data import DataConfig, TextData
from swarmnet.diloco import (
    DiLoCoConfig,
    GlobalState,
    InnerConfig,
    Replica,
    StateSync,
    StateSyncConfig,
    SwarmTrainer,
    TrainerConfig,
)
from swarmnet.identity import Identity
from swarmnet.models import GPT, preset
from swarmnet.transport.memory import MemoryNetwork

TEXT = b"".join(
    b"In the beginning was the word %d, and the word was with swarm %d.\n" % (i, i % 7) for i in range(400)
)
DATA = TextData(DataConfig(seq_len=32, batch_size=4, val_windows=16), text=TEXT)
AVERAGING = AveragingConfig(
    matchmaking=MatchmakingConfig(target_group_size=8, min_group_size=1, min_wait=0.5, timeout=5.0)
)


def diloco(**changes: object) -> DiLoCoConfig:
    inner = InnerConfig(lr=3e-3, warmup_steps=2, total_steps=60)
    return DiLoCoConfig(**{"inner_steps": 5, "inner": inner, **changes})  # type: ignore[arg-type]


@dataclass
class Node:
    trainer: SwarmTrainer
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None


async def make_node(
    network: MemoryNetwork, index: int, config: DiLoCoConfig, *, max_steps: int, shards: int = 4, seed: int = 0
) -> Node:
    torch.manual_seed(seed)  # every trainer starts from the same initial weights
    replica = Replica(GPT(preset("tiny")), config)
    identity = Identity.generate()
    transport = network.add_peer(identity.peer_id)
    trainer_config = TrainerConfig(run="t", schema="tiny", max_steps=max_steps, averaging=AVERAGING, poll_interval=0.2)
    trainer = SwarmTrainer(
        transport, identity, replica, DATA.sampler(index % shards, shards), trainer_config,
        validation=DATA.validation_batches(),
    )  # fmt: skip
    await trainer.start()
    return Node(trainer, asyncio.Event())


def launch(node: Node) -> Node:
    node.task = asyncio.create_task(node.trainer.run(node.stop))
    return node


def digest(node: Node) -> str:
    return node.trainer.replica.state_digest()


NUMEL = 300_000  # 2.4 MB state blob: with a 1 MiB minimum part it travels in three parts


def state(seed: int, rounds: int = 3) -> GlobalState:
    """A random global state of ``NUMEL`` parameters after ``rounds`` syncs of 10 inner steps."""
    gen = torch.Generator().manual_seed(seed)
    return GlobalState(torch.randn(NUMEL, generator=gen), torch.randn(NUMEL, generator=gen), rounds * 10, rounds)


async def syncs(network: MemoryNetwork, count: int, schema: str = "s") -> list[StateSync]:
    """``count`` started ``StateSync`` peers of run ``r`` on ``network``."""
    out = []
    for _ in range(count):
        identity = Identity.generate()
        sync = StateSync(
            network.add_peer(identity.peer_id), identity, StateSyncConfig(run="r", part_size=1 << 20), schema
        )
        await sync.start()
        out.append(sync)
    return out
