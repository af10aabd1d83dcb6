"""``swarmnet coordinator`` as a real process: prints its address, serves rounds, exits 0 on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from safetensors.torch import save_file

from swarmnet.coordinator.store import CoordinatorStore
from tests.integration.federated.harness import initial_adapter, make_client, run_all
from tests.support import SwarmnetProcess

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]


def test_coordinator_command_serves_rounds_and_stops_cleanly(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter.safetensors"
    save_file(initial_adapter(), str(adapter))
    state = tmp_path / "state"
    args = ["coordinator", "--state-dir", str(state), "--initial-adapter", str(adapter), "--port", "0",
            "--clients-per-round", "3", "--min-clients", "3", "--local-steps", "2", "--lr", "0.05",
            "--codec", "topk", "--topk-ratio", "0.2", "--strategy", "fedadam", "--server-lr", "0.01"]  # fmt: skip
    process = SwarmnetProcess("coordinator", args, tmp_path)
    clients = []
    try:
        address = process.next_line(timeout=60)
        assert address.startswith("127.0.0.1:")
        clients = [make_client(address, seed) for seed in range(3)]
        results = run_all(clients, lambda c: c.run(max_rounds=2, timeout_s=60))
        assert [len(r) for r in results] == [2, 2, 2]
        status = clients[0].connection.status()
        assert status.strategy == "fedadam"
        assert status.history[0].outcome == "completed"
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.log_tail()
    finally:
        for client in clients:
            client.close()
        process.stop()
    stored = CoordinatorStore(state).load()
    assert stored is not None
    assert stored.version >= 2
    assert {"m", "v"} <= set(stored.server_state.tensors)  # FedAdam's moments survive a restart


def test_bad_flags_exit_with_a_usage_error(tmp_path: Path) -> None:
    process = SwarmnetProcess(
        "coordinator-bad", ["coordinator", "--state-dir", str(tmp_path), "--clients-per-round", "0"], tmp_path
    )
    try:
        assert process.wait(60) == 2
        assert "clients_per_round" in process.log_tail()
    finally:
        process.stop()
