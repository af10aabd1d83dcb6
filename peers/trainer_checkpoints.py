"""A trainer in and out of checkpoints: global state, momentum, local parameters, AdamW state, and the
fragment averagers' error-feedback residuals (``swarmnet.diloco.residuals``)."""

from __future__ import annotations

import logging

import torch

from swarmnet.diloco import SwarmTrainer
from swarmnet.diloco.checkpoint import CheckpointConfig, flatten_state, load_latest, save_checkpoint, unflatten_state
from swarmnet.diloco.residuals import feedback_tensors, load_feedback
from swarmnet.errors import ConfigError

__all__ = ["restore", "save"]

logger = logging.getLogger(__name__)

_FORMAT = 1  # residuals came later, as optional entries: a checkpoint without them still loads


def save(trainer: SwarmTrainer, config: CheckpointConfig) -> None:
    """Write the trainer's whole state as the checkpoint of its current round (atomically)."""
    replica = trainer.replica
    inner, skeleton = flatten_state(replica.optimizer.state_dict(), "inner")
    feedback, fragments = feedback_tensors(trainer.averagers)
    tensors = {
        "global": replica.global_params, "momentum": replica.momentum, "local": replica.flat.vector, **inner,
        **feedback,
    }  # fmt: skip
    metadata = {
        "format": _FORMAT, "step": replica.step, "rounds": replica.rounds, "numel": replica.flat.numel,
        "inner": skeleton, "feedback": fragments,
    }  # fmt: skip
    path = save_checkpoint(config, replica.rounds, tensors, metadata)
    logger.info("checkpoint of round %d (step %d) saved to %s", replica.rounds, replica.step, path)


def restore(trainer: SwarmTrainer, config: CheckpointConfig) -> bool:
    """Load the newest valid checkpoint into ``trainer`` (before ``start``); False if there is none.

    Raises ``ConfigError`` for a checkpoint of another model or with malformed residuals.
    """
    checkpoint = load_latest(config)
    if checkpoint is None:
        logger.info("no checkpoint in %s; starting fresh", config.directory)
        return False
    replica, meta, tensors = trainer.replica, checkpoint.metadata, checkpoint.tensors
    if meta.get("format") != _FORMAT or meta.get("numel") != replica.flat.numel:
        raise ConfigError(f"checkpoint {checkpoint.path} is for another model (numel {meta.get('numel')})")
    # The residuals first: they are the part a checkpoint of this model can still get wrong.
    load_feedback(trainer.averagers, replica, tensors, meta.get("feedback"), str(checkpoint.path))
    replica.load_global(tensors["global"], tensors["momentum"], int(meta["step"]), int(meta["rounds"]))
    with torch.no_grad():
        replica.flat.vector.copy_(tensors["local"])
    replica.optimizer.load_state_dict(unflatten_state(tensors, meta["inner"], "inner"))
    logger.info("resumed from %s: round %d, step %d", checkpoint.path, replica.rounds, replica.step)
    return True
