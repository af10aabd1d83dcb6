"""The demo's closing summary prints peers stopped before their closing evaluation without failing."""

from __future__ import annotations

from typing import Any

import pytest

from swarmnet.cli.demo_report import print_summary


def _summary(val_after: float | None, sample: str, digest: str = "d1") -> dict[str, Any]:
    return {
        "peer_id": "12D3KooWAAAAAAAAAAAA", "parameters": 1000, "steps": 40, "rounds": 4, "val_loss_before": 5.5,
        "val_loss_after": val_after, "bytes_sent": 1000, "allreduce_bytes": 100_000, "digest": digest,
        "sample": sample,
    }  # fmt: skip


def test_a_finished_peer_shows_its_loss_and_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary([_summary(1.25, "And God said hello")], seconds=60)
    out = capsys.readouterr().out
    assert "1.250" in out
    assert "And God said hello" in out
    assert "identical global parameters and outer momentum: yes" in out


def test_a_stopped_peer_shows_a_dash_and_no_sample(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary([_summary(None, ""), _summary(1.5, "", digest="d2")], seconds=60)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("12D3KooW")]
    assert rows[0].split()[4] == "-"
    assert rows[1].split()[4] == "1.500"
    assert "generated text" not in out
    assert "no (2 different states)" in out
