"""Seeded network faults for in-memory simulations: message loss and one-way delay.

A ``FaultPlan`` only describes the faults; the ``MemoryNetwork`` that applies it owns the
``random.Random(seed)`` that draws them, so a plan stays a frozen, hashable value that can be
logged, compared and reused, and the same seed with the same program yields the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from swarmnet.errors import ConfigError

__all__ = ["FaultPlan"]


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """What goes wrong on a simulated network. The default plan is a perfect, instant network."""

    # Seeds the network's RNG: every drop and delay is drawn from it, in program order.
    seed: int = 0
    # Probability that one RPC message (request, response, stream item) or one DHT operation is
    # silently lost. A lost RPC message leaves the caller waiting until its timeout.
    drop_rate: float = 0.0
    # Each message or DHT operation takes uniform(min_delay, max_delay) seconds one way, measured
    # on the network's clock (virtual time under ``run_virtual``).
    min_delay: float = 0.0
    max_delay: float = 0.0

    def validate(self) -> None:
        """Raise ``ConfigError`` unless ``0 <= drop_rate <= 1`` and ``0 <= min_delay <= max_delay < inf``."""
        if not 0.0 <= self.drop_rate <= 1.0:
            raise ConfigError(f"drop_rate must be within [0, 1], got {self.drop_rate!r}")
        if not (0.0 <= self.min_delay <= self.max_delay and math.isfinite(self.max_delay)):
            raise ConfigError(
                f"delays must satisfy 0 <= min_delay <= max_delay < inf, got {self.min_delay!r}, {self.max_delay!r}"
            )

    @property
    def is_perfect(self) -> bool:
        """True when nothing is ever dropped or delayed, so the network can skip drawing random numbers."""
        return self.drop_rate == 0.0 and self.max_delay == 0.0
