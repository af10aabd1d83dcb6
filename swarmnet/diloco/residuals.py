"""The fragment averagers' error-feedback residuals in a trainer's checkpoint: a resumed trainer goes on with
the compression error it still owes the swarm instead of dropping it.

Each fragment's residuals are stored as ``feedback/f{fragment}/{name}`` tensors (``name`` as in
``ErrorFeedback.state_dict``), and the checkpoint's metadata lists the fragments saved. A fragment whose
exchange is in flight at the save (Streaming DiLoCo) is left out, since its residuals are half updated; on
resume it starts from zero, as does every fragment of a checkpoint from before residuals were saved.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from swarmnet.averaging import Averager
from swarmnet.diloco.replica import Replica
from swarmnet.errors import ConfigError

__all__ = ["feedback_tensors", "load_feedback"]

logger = logging.getLogger(__name__)

_PREFIX = "feedback"


def feedback_tensors(averagers: Sequence[Averager]) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Copies of every idle fragment averager's residuals, by checkpoint name, and the fragments saved."""
    tensors: dict[str, torch.Tensor] = {}
    saved = []
    for fragment, averager in enumerate(averagers):
        try:
            state = averager.feedback_state()
        except RuntimeError:  # its exchange is in flight: the next checkpoint saves it
            logger.info("fragment %d is exchanging: its error-feedback residuals are left out of this checkpoint",
                        fragment)  # fmt: skip
            continue
        tensors.update({f"{_PREFIX}/f{fragment}/{name}": tensor for name, tensor in state.items()})
        saved.append(fragment)
    return tensors, saved


def load_feedback(
    averagers: Sequence[Averager], replica: Replica, tensors: Mapping[str, torch.Tensor], saved: Any, source: str
) -> None:
    """Load the residuals a checkpoint from ``source`` holds into the fragment averagers.

    ``saved`` is the metadata's list of fragments saved (None for a checkpoint from before residuals were
    saved: they all start from zero, with a log line). Raises ``ConfigError`` for malformed residuals (not
    finite, a size that does not fit the fragment, a fragment the trainer does not have); nothing is used then.
    """
    if saved is None:
        logger.info("%s holds no error-feedback residuals (an older checkpoint): they start from zero", source)
        return
    fragments = len(averagers)
    if not isinstance(saved, list) or not all(isinstance(p, int) and 0 <= p < fragments for p in saved):
        raise ConfigError(f"{source}: error-feedback residuals of fragments {saved!r}, the trainer has {fragments}")
    states: list[dict[str, torch.Tensor]] = [{} for _ in averagers]
    for name, tensor in tensors.items():
        if not name.startswith(f"{_PREFIX}/"):
            continue
        fragment, _, rest = name[len(_PREFIX) + 1 :].partition("/")
        index = int(fragment[1:]) if fragment[:1] == "f" and fragment[1:].isdigit() else -1
        if index not in saved:
            raise ConfigError(f"{source}: error-feedback entry {name!r} is of no fragment saved ({saved})")
        states[index][rest] = tensor
    templates = {p: [replica.global_params[replica.flat.slices[p]]] for p in saved}  # what each one averages
    for fragment in saved:  # check every fragment before loading any: a refused checkpoint changes nothing
        try:
            averagers[fragment].check_feedback_state(states[fragment], templates[fragment])
        except ValueError as error:
            reason = f"malformed error-feedback residuals of fragment {fragment}: {error}"
            raise ConfigError(f"{source}: {reason}") from error
    for fragment in saved:
        averagers[fragment].load_feedback_state(states[fragment], templates[fragment])
    missing = sorted(set(range(fragments)) - set(saved))
    if missing:
        logger.info("%s holds no error-feedback residuals of fragments %s: they start from zero", source, missing)
