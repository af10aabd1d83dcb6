"""The README's main command, small: ``swarmnet demo`` trains a real swarm and prints its summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.multiprocess


def test_demo_trains_a_local_swarm_and_summarizes(tmp_path: Path) -> None:
    # Outer momentum 0.5: with 0.9 a run this short overshoots once the inner lr has decayed (tiny model).
    argv = ["demo", "--peers", "2", "--preset", "tiny", "--steps", "40", "--inner-steps", "10"]
    argv += ["--outer-momentum", "0.5", "--workdir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "swarmnet", *argv], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "all peers hold identical global parameters and outer momentum: yes" in out, out
    assert "generated text" in out
    summaries = [json.loads((tmp_path / f"peer-{i}.json").read_text()) for i in range(2)]
    for summary in summaries:
        assert summary["steps"] == 40
        assert summary["val_loss_after"] < summary["val_loss_before"] - 1.0
        assert summary["bytes_sent"] * 50 < summary["allreduce_bytes"]
    assert max(summaries[0]["group_sizes"]) == 2
