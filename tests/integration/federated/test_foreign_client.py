"""Clients written from swarmnet/proto/PROTOCOL.md alone take part in rounds: one in Python that
uses only grpcio's generic calls and its own protobuf encoding (run with swarmnet and protobuf made
unimportable), and one in Node with @grpc/grpc-js (skipped where node or the package is missing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.federated.harness import coordinator_config, running

pytestmark = pytest.mark.timeout(120)

KIT = Path(__file__).resolve().parent / "foreign_client"
PROTO = Path(__file__).resolve().parents[3] / "swarmnet" / "proto" / "federated.proto"
NODE_MODULES = Path(sys.prefix) / "node" / "node_modules"  # scripts/test.sh installs the npm packages here
# The Python client runs with every swarmnet and protobuf module unimportable: it has only the document.
_ISOLATED = (
    "import runpy, sys\n"
    "for name in ('swarmnet', 'google.protobuf'): sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def _config(tmp_path: Path, codec: str) -> Any:
    return coordinator_config(tmp_path, clients_per_round=1, min_clients=1, min_participants=1, rounds=2, codec=codec)


def _check(result: subprocess.CompletedProcess[str], codec: str, coordinator_state: Any) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["round"] for line in lines] == [1, 2]
    assert all(line["codec"] == codec and line["error"] <= 1e-6 for line in lines), lines
    assert [line["version"] for line in lines] == [[0, 1], [1, 2]]
    client_id = lines[0]["client_id"]
    assert [r.contributors for r in coordinator_state.history] == [(client_id,), (client_id,)]


@pytest.mark.parametrize("codec", ["none", "int8"])
def test_a_python_client_from_the_protocol_document(tmp_path: Path, codec: str) -> None:
    with running(_config(tmp_path, codec)) as coordinator:
        command = [sys.executable, "-I", "-c", _ISOLATED, str(KIT / "raw_client.py")]
        result = subprocess.run(
            [*command, "--address", coordinator.address, "--rounds", "2"],
            capture_output=True, text=True, timeout=100, check=False,
        )  # fmt: skip
        state = coordinator.server.engine.state  # type: ignore[union-attr]
    _check(result, codec, state)


@pytest.mark.parametrize("codec", ["none", "int8"])
def test_a_node_client_from_the_protocol_document(tmp_path: Path, codec: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (NODE_MODULES / "@grpc" / "grpc-js").is_dir() or not (NODE_MODULES / "@grpc" / "proto-loader").is_dir():
        pytest.skip(f"@grpc/grpc-js and @grpc/proto-loader are not in {NODE_MODULES} (scripts/test.sh installs them)")
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    with running(_config(tmp_path, codec)) as coordinator:
        result = subprocess.run(
            [node, str(KIT / "client.js"), "--address", coordinator.address, "--proto", str(PROTO), "--rounds", "2"],
            capture_output=True, text=True, timeout=100, check=False, env=env,
        )  # fmt: skip
        state = coordinator.server.engine.state  # type: ignore[union-attr]
    _check(result, codec, state)
