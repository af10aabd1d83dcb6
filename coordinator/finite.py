"""Only finite state becomes the global adapter: checked after every aggregation and at every start.

Each update is checked for NaN and Inf as it arrives, but finite updates can still add up past
float32's range (two of 3e38 per value do), and an adaptive server optimizer squares the
aggregate into its second moment. So the round's result, adapter and optimizer moments, is checked
before it is committed, and a stored state is checked before a coordinator serves it.
"""

from __future__ import annotations

import torch

from swarmnet.coordinator.strategies import ServerState
from swarmnet.errors import ConfigError

__all__ = ["NonFiniteAggregate", "non_finite_parts", "require_finite"]


class NonFiniteAggregate(ValueError):
    """A round's aggregate, new adapter or optimizer state holds NaN or Inf: nothing is committed."""


def non_finite_parts(adapter: torch.Tensor, server_state: ServerState) -> list[str]:
    """The names of the tensors holding NaN or Inf: ``adapter`` and server-optimizer moments (``opt.m``...)."""
    tensors = {"adapter": adapter, **{f"opt.{name}": t for name, t in server_state.tensors.items()}}
    return [name for name, tensor in tensors.items() if not bool(torch.isfinite(tensor).all())]


def require_finite(adapter: torch.Tensor, server_state: ServerState, where: str) -> None:
    """Raise ``ConfigError`` naming ``where`` if the adapter or optimizer state to start from holds NaN or Inf.

    A coordinator refuses to serve such a state rather than hand it to every client: restore an
    older checkpoint from the state directory's ``state/`` folder, or start afresh.
    """
    broken = non_finite_parts(adapter, server_state)
    if broken:
        raise ConfigError(
            f"{where}: {', '.join(broken)} holds NaN or Inf; refusing to serve it (restore an older "
            "checkpoint from its state/ folder or start from a fresh state directory)"
        )
