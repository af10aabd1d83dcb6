"""How far ahead of us another trainer of the run can plausibly be: the bound on others' claims.

Another trainer's step and round number are only its word. A trainer keeps a reference point,
the step it was at and the time it was there (set when it starts, reaches a sync point or adopts
a state), and believes a claim only if

* the round number fits the step: a state at step ``s`` holds at most
  ``DiLoCoConfig.syncs_through(s)`` rounds (one per fragment sync the schedule put before it), and
* the step is within reach: at most ``reference + 2 * inner_steps + max_step_rate * elapsed``.
  Two sync intervals cover peers that were a little ahead when we were last in step with them;
  ``max_step_rate`` (inner steps per second no trainer of the run exceeds) covers the time since.

Before the first reference point (a trainer about to join, fresh or resumed from a checkpoint)
only the first check applies: a joiner has no clock of the run yet and relies on counting
announcers instead (``consensus``).
Claims that fail are ignored: a peer's first one is logged as a warning, later ones at debug level.
"""

from __future__ import annotations

import logging
import math

from swarmnet.clock import Clock
from swarmnet.diloco.config import DiLoCoConfig

__all__ = ["PaceBound"]

logger = logging.getLogger(__name__)

_MAX_LOGGED = 1024  # peers remembered so that each one's rejected claims are warned about once


class PaceBound:
    """The furthest step (and round) another trainer can have reached by now, from our reference point."""

    def __init__(self, config: DiLoCoConfig, max_step_rate: float, clock: Clock) -> None:
        self.config, self.max_step_rate, self._clock = config, max_step_rate, clock
        self._reference: tuple[int, float] | None = None  # (our step, the time we were there)
        self._warned: set[str] = set()

    def mark(self, step: int) -> None:
        """We are at inner step ``step`` now (started, reached a sync point, or adopted a state)."""
        self._reference = (step, self._clock.time())

    def max_step(self) -> int | None:
        """The furthest believable step of another trainer now; ``None`` before any reference point."""
        if self._reference is None:
            return None
        step, since = self._reference
        elapsed = max(0.0, self._clock.time() - since)
        return step + 2 * self.config.inner_steps + math.ceil(self.max_step_rate * elapsed)

    def allows(self, step: int, rounds: int | None = None) -> bool:
        """Whether a trainer can honestly be at ``step`` (with ``rounds`` syncs done, if given) by now."""
        if rounds is not None and rounds > self.config.syncs_through(step):
            return False
        limit = self.max_step()
        return limit is None or step <= limit

    def check(self, peer: str, step: int, rounds: int | None = None) -> bool:
        """``allows``, logging a rejected claim (a warning for ``peer``'s first, debug level after that)."""
        if self.allows(step, rounds):
            return True
        level = logging.DEBUG if peer in self._warned else logging.WARNING
        if len(self._warned) >= _MAX_LOGGED:
            self._warned.clear()
        self._warned.add(peer)
        logger.log(
            level, "ignoring %s's claim of step %d%s: beyond what the run allows (furthest believable step %s)",
            peer[:16], step, "" if rounds is None else f", round {rounds}", self.max_step(),
        )  # fmt: skip
        return False
