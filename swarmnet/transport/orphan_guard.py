"""Make hivemind's DHT process and its p2p daemon die with the process that started them.

hivemind forks the DHT into a child process, which starts ``p2pd``. If the parent is SIGKILLed
(OOM killer, ``kill -9``), both would keep running, holding ports and serving a dead peer's DHT
node. This coroutine runs *inside* the DHT process (via ``DHT.run_coroutine``) and watches for
re-parenting; when the parent is gone it kills its own children (the daemon) and exits.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psutil

__all__ = ["exit_when_orphaned"]

_POLL_SECONDS = 0.5
_watchers: set[asyncio.Task[None]] = set()  # keeps the watcher task referenced inside the DHT process


async def exit_when_orphaned(_dht: Any, _node: Any, parent_pid: int) -> None:
    """Start a watcher in the DHT process; returns at once."""
    task = asyncio.create_task(_watch(parent_pid))
    _watchers.add(task)


async def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # noqa: ASYNC110 (nothing to wait on: the kernel re-parents us silently)
        await asyncio.sleep(_POLL_SECONDS)
    for child in psutil.Process().children(recursive=True):
        child.kill()
    os._exit(1)
