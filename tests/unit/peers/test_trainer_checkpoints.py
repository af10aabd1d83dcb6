"""A trainer's replica through a checkpoint: resumed training is bitwise equal to uninterrupted training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from swarmnet.diloco import DiLoCoConfig, InnerConfig, Replica
from swarmnet.diloco.checkpoint import CheckpointConfig
from swarmnet.errors import ConfigError
from swarmnet.models import GPT, preset
from swarmnet.peers.trainer_checkpoints import restore, save
from tests.unit.diloco.harness import DATA

CONFIG = DiLoCoConfig(inner_steps=5, inner=InnerConfig(warmup_steps=2, total_steps=40))


def fresh(seed: int = 0) -> Replica:
    torch.manual_seed(seed)
    return Replica(GPT(preset("tiny")), CONFIG)


def train(replica: Replica, steps: int) -> None:
    sampler = DATA.sampler(0, 2)
    for _ in range(steps):
        replica.inner_step(sampler.batch(replica.step))
        if CONFIG.syncs_after(replica.step):
            replica.apply_outer(replica.pseudo_gradient())


def test_resume_is_bitwise_equal_to_training_on(tmp_path: Path) -> None:
    config = CheckpointConfig(directory=tmp_path)
    original = fresh()
    train(original, 12)  # mid-round: local differs from global, AdamW has state
    save(original, config)
    resumed = fresh(seed=1)  # other weights: everything must come from the checkpoint
    assert restore(resumed, config)
    assert resumed.state_digest() == original.state_digest()
    assert torch.equal(resumed.flat.vector, original.flat.vector)
    train(original, 8)
    train(resumed, 8)
    assert torch.equal(resumed.flat.vector, original.flat.vector)
    assert resumed.state_digest() == original.state_digest()


def test_no_checkpoint_means_a_fresh_start_and_another_model_is_refused(tmp_path: Path) -> None:
    config = CheckpointConfig(directory=tmp_path)
    assert not restore(fresh(), config)
    save(fresh(), config)
    with pytest.raises(ConfigError, match="another model"):
        restore(Replica(GPT(preset("debug")), CONFIG), config)
