"""How an open round gathers its updates (``rounds.py``): plainly until all are in or the deadline, or
through the four secure-aggregation phases."""

from __future__ import annotations

import time
from collections.abc import Callable

from swarmnet.coordinator.config import RoundSettings
from swarmnet.coordinator.open_round import OpenRound
from swarmnet.coordinator.rounds_signal import RoundSignal

__all__ = ["collect", "secure_phases"]


async def collect(round_: OpenRound, signal: RoundSignal, settings: RoundSettings) -> str:
    """Wait for ``round_``'s updates; why the round fails, or "" if enough came."""
    await signal.wait(round_.all_in, round_.deadline)
    if len(round_.submissions) < settings.min_participants:
        return f"{len(round_.submissions)} updates by the deadline, {settings.min_participants} needed"
    return ""


async def secure_phases(
    round_: OpenRound, signal: RoundSignal, settings: RoundSettings, enter: Callable[[str], None]
) -> str:
    """Run the secure phases of ``round_``, calling ``enter`` with each; why the round fails, or ""."""
    secagg = round_.secagg
    assert secagg is not None
    for phase in ("advertise", "share", "collect", "unmask"):
        secagg.phase = phase
        enter(phase)
        if phase == "collect":
            round_.deadline = time.monotonic() + settings.round_timeout_s
        await signal.notify()
        deadline = round_.deadline if phase == "collect" else time.monotonic() + settings.phase_timeout_s
        await signal.wait(lambda: not secagg.expecting(), deadline)
        needed = max(secagg.threshold, settings.min_participants if phase == "collect" else 0)
        if secagg.received() < needed:
            return f"secure aggregation phase {phase}: {secagg.received()} clients, {needed} needed"
    secagg.phase = "done"
    return ""
