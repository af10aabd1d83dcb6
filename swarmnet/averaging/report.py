"""What one member's data phase found out: contributors, refusals, failures, timings (``allreduce.py``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

__all__ = ["RoundReport"]


@dataclass
class RoundReport:
    """What ``GroupRound.run`` found out; the averager turns it into an ``Outcome``."""

    contributors: set[int] = field(default_factory=set)
    rejected: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    distrusted: dict[int, str] = field(default_factory=dict)  # reducers whose result we refused
    phase_seconds: dict[str, float] = field(default_factory=dict)
    recovered_elements: int = 0
    amended_elements: int = 0
    unaveraged_elements: int = 0
    consistent: bool = True
    mode: str = "reduce"

    def time_phase(self, pass_no: int, name: str, started: float) -> None:
        """Record the loop time since ``started`` as phase ``name`` (a recovery phase after pass 0)."""
        key = name if pass_no == 0 else f"recovery_{name}"
        self.phase_seconds[key] = asyncio.get_running_loop().time() - started
