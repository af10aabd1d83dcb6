"""A trainer through a checkpoint: resumed training is bitwise equal to uninterrupted training, and the
fragment averagers' error-feedback residuals come back bitwise (or start from zero, for an older checkpoint)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import torch

from swarmnet.clock import SystemClock, run_virtual
from swarmnet.diloco import DiLoCoConfig, InnerConfig, Replica, SwarmTrainer, TrainerConfig
from swarmnet.diloco.checkpoint import CheckpointConfig, load_latest, save_checkpoint
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.models import GPT, preset
from swarmnet.peers.trainer_checkpoints import restore, save
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.diloco.harness import DATA, diloco, launch, make_node

CONFIG = DiLoCoConfig(inner_steps=5, inner=InnerConfig(warmup_steps=2, total_steps=40))
SIGN = diloco(codec="sign1bit")


def fresh(seed: int = 0, config: DiLoCoConfig = CONFIG, model: str = "tiny") -> SwarmTrainer:
    """A trainer that is never started: enough to hold a replica and its averagers' residuals."""
    torch.manual_seed(seed)
    identity = Identity.generate()
    transport = MemoryNetwork(SystemClock()).add_peer(identity.peer_id)
    replica = Replica(GPT(preset(model)), config)
    return SwarmTrainer(transport, identity, replica, DATA.sampler(0, 2), TrainerConfig(run="t", schema="tiny"))


def train(replica: Replica, steps: int) -> None:
    sampler = DATA.sampler(0, 2)
    for _ in range(steps):
        replica.inner_step(sampler.batch(replica.step))
        if CONFIG.syncs_after(replica.step):
            replica.apply_outer(replica.pseudo_gradient())


def trained_with_residuals(config: DiLoCoConfig = SIGN) -> SwarmTrainer:
    """A trainer after two sign1bit rounds with a second one: its averagers hold residuals."""

    async def main() -> SwarmTrainer:
        network = MemoryNetwork()
        nodes = [launch(await make_node(network, i, config, max_steps=10)) for i in range(2)]
        await asyncio.gather(*(n.task for n in nodes if n.task))
        assert all(o.succeeded for o in nodes[0].trainer.outcomes)
        return nodes[0].trainer

    return run_virtual(main())


def test_resume_is_bitwise_equal_to_training_on(tmp_path: Path) -> None:
    config = CheckpointConfig(directory=tmp_path)
    original = fresh()
    train(original.replica, 12)  # mid-round: local differs from global, AdamW has state
    save(original, config)
    resumed = fresh(seed=1)  # other weights: everything must come from the checkpoint
    assert restore(resumed, config)
    assert resumed.replica.state_digest() == original.replica.state_digest()
    assert torch.equal(resumed.replica.flat.vector, original.replica.flat.vector)
    train(original.replica, 8)
    train(resumed.replica, 8)
    assert torch.equal(resumed.replica.flat.vector, original.replica.flat.vector)
    assert resumed.replica.state_digest() == original.replica.state_digest()


def test_no_checkpoint_means_a_fresh_start_and_another_model_is_refused(tmp_path: Path) -> None:
    config = CheckpointConfig(directory=tmp_path)
    assert not restore(fresh(), config)
    save(fresh(), config)
    with pytest.raises(ConfigError, match="another model"):
        restore(fresh(model="debug"), config)


def test_residuals_come_back_bitwise(tmp_path: Path) -> None:
    config = CheckpointConfig(directory=tmp_path)
    original = trained_with_residuals()
    state = original.averagers[0].feedback_state()
    assert len(state) == 4  # the sender's and the reducer's residual, with their shapes
    assert any(bool(t.abs().sum() > 0) for name, t in state.items() if name.startswith("residual/"))
    save(original, config)
    resumed = fresh(seed=1, config=SIGN)
    assert restore(resumed, config)
    again = resumed.averagers[0].feedback_state()
    assert again.keys() == state.keys()
    for name, tensor in state.items():
        assert again[name].dtype == tensor.dtype, name
        assert torch.equal(again[name], tensor), name
    assert resumed.replica.state_digest() == original.replica.state_digest()
    statistics = original.statistics().averagers[0].error_feedback
    assert statistics is not None
    assert statistics.keys == 2
    assert resumed.statistics().averagers[0].error_feedback == statistics


def test_a_checkpoint_without_residuals_loads_and_they_start_from_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = CheckpointConfig(directory=tmp_path)
    original = trained_with_residuals()
    save(original, config)
    checkpoint = load_latest(config)
    assert checkpoint is not None
    # What a trainer wrote before residuals were checkpointed: no residual tensors, no "feedback" list.
    tensors = {name: t for name, t in checkpoint.tensors.items() if not name.startswith("feedback/")}
    metadata = {key: value for key, value in checkpoint.metadata.items() if key != "feedback"}
    save_checkpoint(config, checkpoint.round + 1, tensors, metadata)
    resumed = fresh(seed=1, config=SIGN)
    with caplog.at_level(logging.INFO, logger="swarmnet.diloco.residuals"):
        assert restore(resumed, config)
    assert "holds no error-feedback residuals (an older checkpoint): they start from zero" in caplog.text
    assert resumed.averagers[0].feedback_state() == {}
    assert resumed.replica.state_digest() == original.replica.state_digest()


def _rewrite(config: CheckpointConfig, change: object) -> None:
    checkpoint = load_latest(config)
    assert checkpoint is not None
    tensors = dict(checkpoint.tensors)
    change(tensors)  # type: ignore[operator]
    save_checkpoint(config, checkpoint.round + 1, tensors, checkpoint.metadata)


def _residual_name(tensors: dict[str, torch.Tensor]) -> str:
    return next(name for name in tensors if name.startswith("feedback/f0/residual/sent/"))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda t: t[_residual_name(t)].__setitem__(3, float("nan")), "must be a finite floating tensor"),
        (lambda t: t.update({_residual_name(t): t[_residual_name(t)][:-1].clone()}), "does not fit a vector"),
        (lambda t: t.update({"feedback/f1/residual/sent/x": torch.zeros(3)}), "of no fragment saved"),
    ],
    ids=["nan", "wrong shape", "unknown fragment"],
)
def test_malformed_residuals_are_refused_and_nothing_is_loaded(tmp_path: Path, change: object, error: str) -> None:
    config = CheckpointConfig(directory=tmp_path)
    save(trained_with_residuals(), config)
    _rewrite(config, change)
    resumed = fresh(seed=1, config=SIGN)
    before = resumed.replica.state_digest()
    with pytest.raises(ConfigError, match=error):
        restore(resumed, config)
    assert resumed.averagers[0].feedback_state() == {}
    assert resumed.replica.state_digest() == before
