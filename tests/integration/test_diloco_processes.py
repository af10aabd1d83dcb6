"""DiLoCo trainers as separate processes on the real transport: learning, joining, a peer killed -9, resume."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import SwarmnetProcess, poll_until

pytestmark = pytest.mark.multiprocess

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


@pytest.fixture
def processes() -> Iterator[list[SwarmnetProcess]]:
    started: list[SwarmnetProcess] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop()


def bootstrap(processes: list[SwarmnetProcess], tmp_path: Path) -> str:
    node = SwarmnetProcess(
        "dht", ["dht", "--host-maddrs", LOOPBACK, "--identity", str(tmp_path / "dht.pem")], tmp_path
    )
    processes.append(node)
    return node.next_line(60)


def trainer(
    processes: list[SwarmnetProcess],
    tmp_path: Path,
    address: str,
    index: int,
    *extra: str,
    steps: int = 60,
    run: str = "it",
    shard: int | None = None,
) -> SwarmnetProcess:
    name = f"trainer-{index}"
    args = [
        "peer", "--initial-peers", address, "--host-maddrs", LOOPBACK, "--identity", str(tmp_path / f"{name}.pem"),
        "--role", "trainer", "--run", run, "--preset", "tiny",
        "--shard", str(index if shard is None else shard), "--shards", "4",
        "--inner-steps", "10", "--max-steps", str(steps), "--codec", "int4", "--warmup-steps", "5",
        "--threads", "1", "--progress", "json", "--summary", str(tmp_path / f"{name}.json"),
        "--benchmark-seconds", "0", "--bandwidth-mbps", "1000", "--group-wait", "1.0", "--outer-momentum", "0.5",
        *extra,
    ]  # fmt: skip
    process = SwarmnetProcess(name, args, tmp_path)
    processes.append(process)
    return process


def summary(tmp_path: Path, index: int, timeout: float = 150) -> dict[str, Any]:
    path = tmp_path / f"trainer-{index}.json"
    poll_until(lambda: path.exists() and path.stat().st_size > 0, timeout=timeout, interval=0.5, what=path.name)
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def wait_for_round(process: SwarmnetProcess, rounds: int, timeout: float = 120) -> None:
    def reached() -> bool:
        while not process.lines.empty():
            line = process.lines.get()
            if line.startswith("{") and json.loads(line)["rounds"] >= rounds:
                return True
        return False

    poll_until(reached, timeout=timeout, interval=0.2, what=f"{process.name} at round {rounds}")


def test_trainers_learn_together_and_a_joiner_catches_up(processes: list[SwarmnetProcess], tmp_path: Path) -> None:
    address = bootstrap(processes, tmp_path)
    first = [trainer(processes, tmp_path, address, i, steps=200) for i in range(2)]
    wait_for_round(first[0], 2)
    trainer(processes, tmp_path, address, 2, steps=200)  # joins a run already two syncs in
    results = [summary(tmp_path, i) for i in range(3)]
    for process in processes[1:]:
        assert process.wait(30) == 0, process.log_tail()
    assert len({r["digest"] for r in results}) == 1, "trainers ended with different global states"
    assert results[2]["state_fetches"] >= 1
    assert max(results[0]["group_sizes"]) == 3
    for result in results:
        assert result["val_loss_after"] < result["val_loss_before"] - 1.0, result
        assert result["bytes_sent"] * 30 < result["allreduce_bytes"]


def test_a_trainer_killed_by_sigkill_does_not_stop_the_others(
    processes: list[SwarmnetProcess], tmp_path: Path
) -> None:
    address = bootstrap(processes, tmp_path)
    nodes = [trainer(processes, tmp_path, address, i, steps=80) for i in range(3)]
    wait_for_round(nodes[2], 3)
    nodes[2].signal(signal.SIGKILL)
    assert nodes[2].wait(10) == -signal.SIGKILL
    survivors = [summary(tmp_path, i) for i in range(2)]
    assert len({r["digest"] for r in survivors}) == 1
    assert survivors[0]["rounds"] == 8
    assert survivors[0]["group_sizes"][-1] == 2  # the last rounds went on without the dead peer
    assert max(survivors[0]["group_sizes"]) == 3


def test_resume_continues_bitwise_from_the_last_checkpoint(processes: list[SwarmnetProcess], tmp_path: Path) -> None:
    """40 steps, stop, resume to 60: the same state as 60 steps in one go (a lone trainer is deterministic)."""
    address = bootstrap(processes, tmp_path)
    schedule = ["--schedule-steps", "60", "--checkpoint-every", "2"]
    straight = trainer(processes, tmp_path, address, 0, *schedule, "--checkpoint-dir", str(tmp_path / "a"), run="a")
    reference = summary(tmp_path, 0)
    assert straight.wait(30) == 0
    checkpoints = [*schedule, "--checkpoint-dir", str(tmp_path / "b")]
    first = trainer(processes, tmp_path, address, 1, *checkpoints, steps=40, run="b", shard=0)
    before = summary(tmp_path, 1)
    assert first.wait(30) == 0
    (tmp_path / "trainer-1.json").unlink()
    trainer(processes, tmp_path, address, 1, *checkpoints, "--resume", steps=60, run="b", shard=0)
    after = summary(tmp_path, 1)
    assert (before["steps"], before["rounds"]) == (40, 4)
    assert (after["steps"], after["rounds"]) == (60, 6)  # 20 more steps from step 40, not 60 from scratch
    assert after["digest"] == reference["digest"]
