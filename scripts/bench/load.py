"""Busy processes for the benchmarks' ``--load N``: a shared machine, made on purpose.

Each process is a pure Python spin loop (one core's worth of demand, no memory traffic) that also exits
by itself once its parent is gone, so a benchmark killed outright leaves none behind.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

__all__ = ["KIND", "busy_processes", "load_row"]

KIND = "python spin loop (pure Python, no memory traffic), one process each"

# Spins, checking now and then that its parent still lives (an orphan is re-parented and stops).
_SPIN = (
    "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(1_000_000):\n        pass\n"
)


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[list[int]]:
    """Start ``count`` spinning processes for the block (their pids); they are stopped on the way out,
    whatever ends the block (an error, Ctrl+C)."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            processes.append(subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL))
        yield [p.pid for p in processes]
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def load_row(idle_1t: object, idle: object, loaded: object) -> dict[str, float | bool | None]:
    """One row of a ``--load`` table: the three GB/s figures (``None`` where not a number), loaded / idle
    one-thread, and whether that is at least the 50% target (the fair share with one busy process per core)."""

    def number(value: object) -> float | None:
        return value if isinstance(value, float) else None

    one, busy = number(idle_1t), number(loaded)
    ratio = busy / one if busy is not None and one else None
    return {
        "idle_1t_gbps": one,
        "idle_gbps": number(idle),
        "loaded_gbps": busy,
        "loaded_over_idle_1t": ratio,
        "at_least_half": ratio is not None and ratio >= 0.5,
    }
