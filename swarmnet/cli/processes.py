"""Child ``swarmnet`` processes of the local launchers: spawned on loopback, dying with their parent."""

from __future__ import annotations

import asyncio
import ctypes
import signal
import sys
from pathlib import Path

__all__ = ["LOOPBACK", "first_line", "spawn", "stop_all"]

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child before exec: if this launcher dies, the child gets SIGTERM and leaves cleanly.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def spawn(workdir: Path, name: str, *argv: str) -> asyncio.subprocess.Process:
    """``python -m swarmnet *argv`` with stdout piped and stderr in ``workdir/name.log``."""
    log = (workdir / f"{name}.log").open("wb")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarmnet", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=log,
        # Its own session: Ctrl+C (or a signal to our process group) reaches only this launcher, which then
        # stops the children in order: the peers first, while the bootstrap node still carries their farewells.
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )  # fmt: skip


async def first_line(process: asyncio.subprocess.Process, timeout: float = 60.0) -> str:
    """The child's first stdout line (its address or ready line); an error if it exits first."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout)
    if not line:
        raise RuntimeError(f"process {process.pid} exited with {await process.wait()} before it was ready")
    return line.decode().strip()


async def stop_all(processes: list[asyncio.subprocess.Process | None], timeout: float = 20.0) -> None:
    """SIGTERM every live process, wait for each, SIGKILL those that outlive ``timeout``."""
    for process in processes:
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
