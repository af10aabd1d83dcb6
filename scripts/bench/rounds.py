"""Shared plumbing of the averaging benchmarks: file barriers between the runner and its peer processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["async_wait_for", "checks_after", "cpu_ticks", "pattern", "tail", "wait_for", "write_atomic"]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that readers never see a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_for(path: Path, deadline: float, procs: list[subprocess.Popen[Any]] | None = None) -> str:
    """Poll for ``path`` until ``deadline`` (monotonic); fail early when a watched process has exited."""
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {path.name}")
        for proc in procs or ():
            if proc.poll() is not None:
                raise RuntimeError(f"peer process exited with {proc.returncode} while waiting for {path.name}")
        time.sleep(0.005)
    return path.read_text()


async def async_wait_for(path: Path, timeout: float) -> str:
    """``wait_for`` for a peer's event loop, which must keep serving RPCs while it waits."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):  # noqa: ASYNC240 (a stat on local disk: too quick to need a thread)
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {path.name}")
        await asyncio.sleep(0.005)
    return await asyncio.to_thread(path.read_text)


def checks_after(
    workdir: Path, tag: str, peers: list[int], deadline: float, procs: list[subprocess.Popen[Any]] | None = None
) -> list[dict[str, Any]]:
    """Once every peer's timing for round ``tag`` is in, let the peers check their results and collect that.

    A peer checks its tensor against the exact average only after ``over-TAG`` exists (``check-TAG-i.json``):
    those full-size passes, done at once, would take CPU from the peers still averaging and so show up in
    the round time of the last one.
    """
    write_atomic(workdir / f"over-{tag}", "")
    return [json.loads(wait_for(workdir / f"check-{tag}-{i}.json", deadline, procs)) for i in peers]


def pattern(numel: int) -> Any:
    """The benchmark tensor before each peer's offset: not constant, so a wrong slice shows."""
    import torch

    return (torch.arange(numel, dtype=torch.float32) % 1000) / 1000


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a peer's log, for error messages."""
    try:
        return f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"--- {path.name}: no log"
