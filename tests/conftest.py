"""Suite-wide guards: every process a test starts must be gone when the suite ends."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from scripts import demote_repo_root

# The repository root behind site-packages: its top-level folders must not shadow installed packages.
demote_repo_root()

# Every process started by this test session (peers, DHT processes, p2p daemons) inherits this
# marker, so leftovers can be found in /proc whoever their parent is.
SESSION_MARKER = f"SWARMNET_TEST_SESSION={uuid.uuid4().hex}"
os.environ[SESSION_MARKER.split("=")[0]] = SESSION_MARKER.split("=")[1]

# Without a GPU, Triton kernels can only run in Triton's interpreter; it must be chosen before any
# module defining a @triton.jit kernel is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _marked_processes() -> list[int]:
    found = []
    needle = SESSION_MARKER.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0") or b"Z" in _state(entry):
                continue
            # torch's shared-memory helper (hivemind's MPFuture uses torch shared memory) serves this
            # pytest process and exits with it; it is not a leak of any test.
            if not (entry / "cmdline").read_bytes().startswith(b"torch_shm_manager"):
                found.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return found


def _state(entry: Path) -> bytes:
    # Field 3 of /proc/PID/stat; zombies (Z) have exited and only wait for their parent.
    return (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail the session if any process it started outlives it (after a grace period)."""
    yield
    deadline = time.monotonic() + 10.0
    while (leftovers := _marked_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = {pid: _cmdline(pid) for pid in leftovers}
    for pid in leftovers:
        os.kill(pid, 9)
    assert not leftovers, f"processes left behind by the test suite: {described}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"
