"""Over the real transport: a foreign peer announcing round 10^6 and an all-zero state takes nothing over.

Three honest trainer processes and a joiner run while ``diloco_attacker.py`` (stock hivemind and
hand-made signed records under its own key) announces a state at round 10^6, step 10^7, a progress
record at that step, and serves its state to whoever asks.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.integration.test_diloco_processes import bootstrap, summary, trainer, wait_for_round
from tests.support import SwarmnetProcess

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(300)]  # five processes on two cores: about 90 s

ATTACKER = Path(__file__).with_name("diloco_attacker.py")
STEPS = 200  # 20 syncs of H = 10: the attacker and the joiner are up well before the honest trainers finish


class Foreign:
    """The attacker's process, its stdout piped and its stderr in ``attacker.log``."""

    def __init__(self, args: list[str], log_dir: Path) -> None:
        self.log_path = log_dir / "attacker.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ATTACKER), *args], stdout=subprocess.PIPE, stderr=self._log, text=True
        )

    def stop(self) -> None:
        """SIGTERM (it shuts its DHT node down), then SIGKILL after 20 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            if self.process.stdout is not None:
                self.process.stdout.close()
        self._log.close()


@pytest.fixture
def started() -> Iterator[tuple[list[SwarmnetProcess], list[Foreign]]]:
    peers: list[SwarmnetProcess] = []
    foreign: list[Foreign] = []
    try:
        yield peers, foreign
    finally:
        for process in foreign:
            process.stop()
        for peer in reversed(peers):
            peer.stop()


def test_a_foreign_peer_at_round_a_million_takes_over_neither_trainers_nor_a_joiner(
    started: tuple[list[SwarmnetProcess], list[Foreign]], tmp_path: Path
) -> None:
    processes, foreign = started
    address = bootstrap(processes, tmp_path)
    honest = [trainer(processes, tmp_path, address, i, steps=STEPS) for i in range(3)]
    wait_for_round(honest[0], 1)  # the run has a state record the attacker can copy its layout from
    served = tmp_path / "served"
    foreign.append(Foreign([address, "it", str(served)], tmp_path))
    attacker = foreign[0].process
    assert attacker.stdout is not None
    ready = attacker.stdout.readline().split()
    assert ready[:1] == ["ready"], foreign[0].log_path.read_text()[-3000:]
    joiner = trainer(processes, tmp_path, address, 3, steps=STEPS)
    results = [summary(tmp_path, i, timeout=240) for i in range(4)]
    for process in [*honest, joiner]:
        assert process.wait(30) == 0, process.log_tail()
    assert served.read_text() == "0", "a trainer downloaded the attacker's state"
    assert len({r["digest"] for r in results}) == 1, json.dumps(results, indent=1)[:3000]
    for result in results[:3]:
        assert (result["steps"], result["rounds"]) == (STEPS, STEPS // 10), result
    assert results[3]["state_fetches"] >= 1
    assert results[3]["rounds"] == STEPS // 10
    # The honest trainers saw the attacker's sync point and refused to follow it.
    claim = f"ignoring {ready[1][:16]}'s claim of step 10000000"
    assert any(claim in p.log_tail(10**6) for p in [*honest, joiner])
