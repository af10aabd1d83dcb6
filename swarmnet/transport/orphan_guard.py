"""How hivemind's DHT process and its p2p daemon end: when asked, or with the process that started them.

hivemind forks the DHT into a child process, which starts ``p2pd``. If the parent is SIGKILLed
(OOM killer, ``kill -9``), both would keep running, holding ports and serving a dead peer's DHT
node. ``exit_when_orphaned`` runs *inside* the DHT process (via ``DHT.run_coroutine``) and watches for
re-parenting; when the parent is gone it kills its own children (the daemon) and exits.

``stop_and_exit`` is how the parent asks the DHT process to stop. It runs hivemind's own shutdown
(withdraw the DHT's handlers from the daemon, then stop the daemon), cut short if the daemon dies
first: a stop signal sent to every process of a service (systemd's ``KillMode=control-group``) ends
the daemon too, and hivemind's shutdown would then wait forever for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import psutil

__all__ = ["exit_when_orphaned", "stop_and_exit"]

_POLL_SECONDS = 0.5
_DAEMON_POLL_SECONDS = 0.05
_REAP_SECONDS = 0.5
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


async def stop_and_exit(_dht: Any, node: Any) -> None:
    """In the DHT process: shut the node down (or give up once the daemon is gone), then exit with code 0."""
    daemons = psutil.Process().children()
    shutdown = asyncio.ensure_future(node.shutdown())
    while not shutdown.done() and any(_running(daemon) for daemon in daemons):
        await asyncio.wait({shutdown}, timeout=_DAEMON_POLL_SECONDS)
    if not shutdown.done():
        if node.p2p.is_alive:  # the daemon died under a shutdown that still waits for its answers
            with contextlib.suppress(Exception):
                node.p2p._terminate()  # hivemind's own cleanup (client and socket files), without the daemon
        else:  # hivemind stopped the daemon itself: let it reap it, or the zombie outlives us
            await asyncio.wait({shutdown}, timeout=_REAP_SECONDS)
    os._exit(0)  # hivemind's loop would keep serving a node that is shut down


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
