"""Busy processes for the benchmarks' ``--load N``: a shared machine, made on purpose.

Each process is a pure Python spin loop (one core's worth of demand, no memory traffic) that also exits
by itself once its parent is gone, so a benchmark killed outright leaves none behind.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

__all__ = ["KIND", "busy_processes"]

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
