"""A signal to a peer's whole process group (systemd's stop, a shell's Ctrl+C) still ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.multiprocess


def test_sigterm_to_the_process_group_stops_the_node_and_its_children(tmp_path: Path) -> None:
    args = ["dht", "--host-maddrs", "/ip4/127.0.0.1/tcp/0", "--identity", str(tmp_path / "dht.pem")]
    log = (tmp_path / "dht.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "swarmnet", *args], stdout=subprocess.PIPE, stderr=log, start_new_session=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"/ip4/127.0.0.1/")
        children = psutil.Process(process.pid).children(recursive=True)
        assert children  # hivemind's DHT process and its p2p daemon
        os.killpg(process.pid, signal.SIGTERM)  # every process of the group at once, the DHT child included
        assert process.wait(60) == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {alive}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        log.close()
