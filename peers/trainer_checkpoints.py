"""A trainer's replica in and out of checkpoints: global state, momentum, local parameters, AdamW state."""

from __future__ import annotations

import logging

import torch

from swarmnet.diloco import Replica
from swarmnet.diloco.checkpoint import CheckpointConfig, flatten_state, load_latest, save_checkpoint
from swarmnet.errors import ConfigError

__all__ = ["restore", "save"]

logger = logging.getLogger(__name__)

_FORMAT = 1


def save(replica: Replica, config: CheckpointConfig) -> None:
    """Write the replica's whole state as the checkpoint of its current round (atomically)."""
    inner, skeleton = flatten_state(replica.optimizer.state_dict(), "inner")
    tensors = {"global": replica.global_params, "momentum": replica.momentum, "local": replica.flat.vector, **inner}
    metadata = {"format": _FORMAT, "step": replica.step, "rounds": replica.rounds, "numel": replica.flat.numel}
    path = save_checkpoint(config, replica.rounds, tensors, {**metadata, "inner": skeleton})
    logger.info("checkpoint of round %d (step %d) saved to %s", replica.rounds, replica.step, path)


def restore(replica: Replica, config: CheckpointConfig) -> bool:
    """Load the newest valid checkpoint into ``replica``; False if there is none."""
    from swarmnet.diloco.checkpoint import unflatten_state

    checkpoint = load_latest(config)
    if checkpoint is None:
        logger.info("no checkpoint in %s; starting fresh", config.directory)
        return False
    meta, tensors = checkpoint.metadata, checkpoint.tensors
    if meta.get("format") != _FORMAT or meta.get("numel") != replica.flat.numel:
        raise ConfigError(f"checkpoint {checkpoint.path} is for another model (numel {meta.get('numel')})")
    replica.load_global(tensors["global"], tensors["momentum"], int(meta["step"]), int(meta["rounds"]))
    with torch.no_grad():
        replica.flat.vector.copy_(tensors["local"])
    replica.optimizer.load_state_dict(unflatten_state(tensors, meta["inner"], "inner"))
    logger.info("resumed from %s: round %d, step %d", checkpoint.path, replica.rounds, replica.step)
    return True
