"""The averaging engine across real processes over the real transport (hivemind DHT and p2p daemons)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

import scripts.testbed as tb  # as a module: pytest would collect functions named test*
from scripts.bench.swarmnet_averaging import run_swarmnet
from swarmnet.averaging import DeadlineConfig
from swarmnet.averaging.deadlines import ThroughputModel

pytestmark = pytest.mark.multiprocess


@dataclass(frozen=True)
class LoopbackNode:
    """A testbed-like node that runs its process directly, on 127.0.0.1."""

    ip: str = "127.0.0.1"

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(argv, **kwargs)

    def tx_bytes(self) -> int:
        return 0


def test_three_processes_average_exactly_and_compressed() -> None:
    report = run_swarmnet(
        [LoopbackNode()] * 3,
        200_000,
        2,
        ["none", "int8", "sign1bit"],
        warmup_rounds=0,
        fresh_per_codec=False,
        straggler_grace=10.0,  # on a busy 2-core machine a peer may go unscheduled past the 1 s default
    )
    short = [
        {"codec": name, "round": rd["round"], **{k: p[k] for k in ("peer", "reason", "failed", "rejected", "phases")}}
        for name, codec in report.items()
        for rd in codec["rounds"]
        for p in rd["peers"]
        if not (p["succeeded"] and p["contributors"] == 3)
    ]
    assert not short, short  # who was left out, and what each peer said about it
    assert report["none"]["max_abs_error"] < 1e-5
    assert report["int8"]["rel_error"] < 0.01
    assert report["sign1bit"]["payload_bytes_per_peer"] < report["none"]["payload_bytes_per_peer"] / 25


@pytest.mark.slow
@pytest.mark.skipif(tb.testbed_unavailable() is not None, reason=f"network testbed: {tb.testbed_unavailable()}")
def test_killing_one_of_four_mid_round_leaves_the_exact_average_of_three() -> None:
    numel, rate = 5_000_000, 100.0
    with tb.testbed(tb.TestbedConfig(peers=4, rate_mbit=rate, prefix="avk")) as bed:
        report = run_swarmnet(bed.nodes, numel, 1, ["none"], warmup_rounds=0, rate_mbit=rate, victim=2)
    result = report["none"]
    assert result["max_abs_error"] < 1e-5  # the exact average of the three survivors
    survivors = result["rounds"][0]["peers"]
    assert all(p["contributors"] == 3 and p["failed"] for p in survivors)
    # The deadline a reducer sets for its part to arrive from the three others.
    deadline = ThroughputModel(DeadlineConfig(), rate).timeout(3 * numel / 4 * 4)
    assert result["seconds"] < 2 * deadline, (result["seconds"], deadline)


def test_two_processes_average_every_round_in_full_on_a_busy_cpu() -> None:
    """Two spinning processes take both cores while two peers average: event loops run late, a member's data
    can reach a peer before its round (or even its group) is set up there, and that data must wait for it."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        report = run_swarmnet([LoopbackNode()] * 2, 50_000, 3, ["none"], warmup_rounds=0, straggler_grace=10.0)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    short = [
        {"round": rd["round"], **{k: p[k] for k in ("peer", "reason", "failed", "rejected", "contributors")}}
        for rd in report["none"]["rounds"]
        for p in rd["peers"]
        if not (p["succeeded"] and p["contributors"] == 2)
    ]
    assert not short, short
    assert report["none"]["max_abs_error"] < 1e-5  # both hold the exact average, hence the same values
