"""Which stage a new stage server joins."""

from __future__ import annotations

from collections.abc import Sequence

from swarmnet.errors import ConfigError
from swarmnet.swarm.load import LoadBounds, StageLoad, StageView, sanitize

__all__ = ["choose_stage_to_join", "neediest_stage"]


def neediest_stage(views: Sequence[StageView]) -> int:
    """The stage with the least throughput per unit of demand; ties: fewer servers, then lower index."""
    if not views:
        raise ConfigError("a pipeline needs at least one stage")
    return min(range(len(views)), key=lambda i: (views[i].ratio, len(views[i].servers), i))


def choose_stage_to_join(
    loads: Sequence[StageLoad], my_throughput: float | None = None, bounds: LoadBounds | None = None
) -> int:
    """The stage a new server should serve: the one with the least throughput per unit of demand.

    A stage with no server has ratio 0 and so always comes first. Joining the bottleneck stage is the only
    way to raise the pipeline's bottleneck, whatever the newcomer's speed, so ``my_throughput`` does not
    change the answer; it is accepted so callers can pass their measurement uniformly with ``plan_move``.
    """
    del my_throughput  # see the docstring: the bottleneck is the right stage for any speed
    bounds = bounds or LoadBounds()
    bounds.validate()
    return neediest_stage(sanitize(loads, bounds))
