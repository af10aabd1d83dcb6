"""Every long-running command stops cleanly on SIGINT or SIGTERM, sent to its main process or its whole group.

A shell's Ctrl+C signals the whole foreground process group; ``kill PID`` and systemd's ``KillMode=mixed``
signal the main process only; systemd's default ``KillMode=control-group`` signals every process of the
service. Each command here is started as a shell starts a job (a process group of its own), stopped one of
those ways, and must exit 0 with no WARNING/ERROR line in its log and nothing it started left running. A
stopped peer must vanish from a second process's ``swarmnet status`` well before its record's ttl.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import save_file

from tests.support import SwarmnetProcess

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(300)]

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
TTL = "60"  # a record's lifetime: far beyond every deadline below, so expiry cannot explain a departure
# hivemind renames the WARNING level to WARN, for our loggers too.
COMPLAINT = re.compile(r"\b(WARN|WARNING|ERROR|CRITICAL)\b|Traceback")
DAEMON_GONE = "the p2p daemon has exited"
NOT_PUBLISHED = "could not publish departure"


class Job(SwarmnetProcess):
    """``python -m swarmnet ...`` in a session and process group of its own, as a shell starts a job."""

    def __init__(self, folder: Path, name: str, *argv: str) -> None:
        super().__init__(name, list(argv), folder, new_session=True, loglevel="INFO")

    def line(self, ready: Callable[[str], bool], timeout: float) -> str:
        """The first stdout line ``ready`` accepts; fails after ``timeout`` or when the process exits first."""
        return self.line_matching(ready, timeout, "its ready line")

    def log(self) -> str:
        """Its stderr so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        """Every process it started, however deep (launchers' peers and their DHT processes too)."""
        return list(psutil.Process(self.process.pid).children(recursive=True))

    def send(self, sig: signal.Signals, style: str) -> list[psutil.Process]:
        """Send ``sig`` to the main process, its group, or every process of its tree; returns its descendants."""
        children = self.descendants()
        if style == "main":
            self.process.send_signal(sig)
        elif style == "group":
            os.killpg(self.process.pid, sig)
        else:  # "tree": like systemd's KillMode=control-group, whatever group each process is in
            for process in [psutil.Process(self.process.pid), *children]:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
        return children

    def close(self) -> None:
        """Kill whatever is left of it; idempotent."""
        with contextlib.suppress(psutil.Error):
            for child in self.descendants():
                with contextlib.suppress(psutil.Error):
                    child.kill()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


@dataclass
class Swarm:
    """A bootstrap node and a ``swarmnet status --watch`` that the tests' peers join and are seen by."""

    address: str
    watch: Job

    def members(self, predicate: Callable[[set[str]], bool], timeout: float, what: str) -> None:
        """Read the watcher's snapshots until one's peer ids satisfy ``predicate``."""

        def showing(line: str) -> bool:
            return predicate({peer["peer_id"] for peer in json.loads(line)["peers"]})

        self.watch.line_matching(showing, timeout, f"status showing {what}")


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    folder = tmp_path_factory.mktemp("swarm")
    bootstrap = Job(folder, "dht", "dht", "--host-maddrs", LOOPBACK, "--identity", str(folder / "dht.pem"))
    jobs = [bootstrap]
    try:
        address = bootstrap.line(lambda line: line.startswith("/ip4/"), 120)
        watch = Job(
            folder, "watch", "status", "--initial-peers", address, "--swarm", "stop", "--json", "--watch", "0.3"
        )
        jobs.append(watch)
        watch.line(lambda line: line.startswith("{"), 120)
        yield Swarm(address, watch)
    finally:
        for job in reversed(jobs):
            job.close()


def _peer_argv(swarm: Swarm, folder: Path, *extra: str) -> list[str]:
    return [
        "peer", "--initial-peers", swarm.address, "--host-maddrs", LOOPBACK, "--swarm", "stop", "--ttl", TTL,
        "--heartbeat", "5", "--benchmark-seconds", "0", "--bandwidth-mbps", "100", "--identity",
        str(folder / "peer.pem"), *extra,
    ]  # fmt: skip


def _stop(job: Job, sig: signal.Signals, style: str, *, allowed: str | None = None) -> None:
    """Signal ``job``; it must exit 0, with no complaint in its log (but ``allowed``), leaving nothing running."""
    children = job.send(sig, style)
    assert job.process.wait(60) == 0, job.log()[-3000:]
    # torch's shared-memory manager leaves by itself a few seconds after its last client: hence the margin.
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    lines = job.log().splitlines()
    complaints = [line for line in lines if COMPLAINT.search(line) and not (allowed and allowed in line)]
    assert not complaints, "\n".join(complaints)


def _quiet(log: Path) -> None:
    complaints = [line for line in log.read_text(errors="replace").splitlines() if COMPLAINT.search(line)]
    assert not complaints, f"{log.name}:\n" + "\n".join(complaints)


BOTH_STYLES = [("main", signal.SIGTERM), ("group", signal.SIGINT)]


def ids(value: object) -> str:
    """Test ids such as ``group-SIGINT``."""
    return value.name if isinstance(value, signal.Signals) else str(value)


@pytest.mark.parametrize(("style", "sig"), [*BOTH_STYLES, ("group", signal.SIGTERM)], ids=ids)
def test_dht(tmp_path: Path, style: str, sig: signal.Signals) -> None:
    job = Job(tmp_path, "dht", "dht", "--host-maddrs", LOOPBACK, "--identity", str(tmp_path / "dht.pem"))
    try:
        job.line(lambda line: line.startswith("/ip4/127.0.0.1/"), 120)
        _stop(job, sig, style)
    finally:
        job.close()


@pytest.mark.parametrize(("style", "sig"), [("main", signal.SIGINT), ("group", signal.SIGTERM)], ids=ids)
def test_peer_leaves_the_listing_at_once(swarm: Swarm, tmp_path: Path, style: str, sig: signal.Signals) -> None:
    job = Job(tmp_path, "peer", *_peer_argv(swarm, tmp_path))
    try:
        peer_id = job.line(lambda line: line.startswith("ready "), 120).removeprefix("ready ")
        swarm.members(lambda ids: peer_id in ids, 30, "the peer")
        _stop(job, sig, style)
        swarm.members(lambda ids: peer_id not in ids, 10, f"the peer gone (its ttl is {TTL} s)")
    finally:
        job.close()


def test_peer_stopped_with_its_p2p_daemon(swarm: Swarm, tmp_path: Path) -> None:
    """systemd's default KillMode=control-group: the daemon dies with us, before or while our farewell goes
    out. Either the peer left the listing, or one INFO line says why it could not (and, if the daemon died
    mid-farewell, the membership layer's line that the departure was not published); no hang."""
    job = Job(tmp_path, "peer", *_peer_argv(swarm, tmp_path))
    try:
        peer_id = job.line(lambda line: line.startswith("ready "), 120).removeprefix("ready ")
        swarm.members(lambda ids: peer_id in ids, 30, "the peer")
        _stop(job, signal.SIGTERM, "tree", allowed=NOT_PUBLISHED)
        if DAEMON_GONE in job.log():
            assert job.log().count(DAEMON_GONE) == 1
        else:
            assert NOT_PUBLISHED not in job.log()
            swarm.members(lambda ids: peer_id not in ids, 10, "the peer gone")
    finally:
        job.close()


@pytest.mark.parametrize(("style", "sig"), [("main", signal.SIGTERM), ("group", signal.SIGINT)], ids=ids)
def test_trainer_peer(swarm: Swarm, tmp_path: Path, style: str, sig: signal.Signals) -> None:
    trainer = ["--role", "trainer", "--run", "stop", "--preset", "tiny", "--inner-steps", "5", "--threads", "1"]
    job = Job(tmp_path, "trainer", *_peer_argv(swarm, tmp_path, *trainer, "--progress", "json"))
    try:
        peer_id = job.line(lambda line: line.startswith("ready "), 120).removeprefix("ready ")
        job.line(lambda line: line.startswith("{"), 120)  # training has begun
        _stop(job, sig, style)
        swarm.members(lambda ids: peer_id not in ids, 10, f"the trainer gone (its ttl is {TTL} s)")
    finally:
        job.close()


@pytest.mark.parametrize(("style", "sig"), BOTH_STYLES, ids=ids)
def test_monitor(swarm: Swarm, tmp_path: Path, style: str, sig: signal.Signals) -> None:
    job = Job(tmp_path, "monitor", "monitor", "--initial-peers", swarm.address, "--swarm", "stop", "--port", "0")
    try:
        job.line(lambda line: line.startswith("serving http://"), 120)
        _stop(job, sig, style)
    finally:
        job.close()


@pytest.mark.parametrize(("style", "sig"), BOTH_STYLES, ids=ids)
def test_coordinator(swarm: Swarm, tmp_path: Path, style: str, sig: signal.Signals) -> None:
    adapter = tmp_path / "adapter.safetensors"
    save_file({"lora_A.weight": torch.zeros(4, 16), "lora_B.weight": torch.zeros(16, 4)}, str(adapter))
    argv = ["coordinator", "--state-dir", str(tmp_path / "state"), "--initial-adapter", str(adapter), "--port", "0"]
    job = Job(tmp_path, "coordinator", *argv, "--initial-peers", swarm.address, "--swarm", "stop")
    try:
        job.line(lambda line: line.startswith("127.0.0.1:"), 120)
        _stop(job, sig, style)
    finally:
        job.close()


@pytest.mark.parametrize(("style", "sig"), BOTH_STYLES, ids=ids)
def test_local(tmp_path: Path, style: str, sig: signal.Signals) -> None:
    job = Job(tmp_path, "local", "local", "--peers", "2", "--ttl", TTL, "--interval", "1")
    try:
        job.line(lambda line: line.startswith("2 live peer(s)"), 180)
        _stop(job, sig, style)
    finally:
        job.close()


@pytest.mark.parametrize(("style", "sig"), BOTH_STYLES, ids=ids)
def test_demo(tmp_path: Path, style: str, sig: signal.Signals) -> None:
    work = tmp_path / "work"
    argv = ["demo", "--peers", "2", "--preset", "tiny", "--steps", "100000", "--inner-steps", "5"]
    job = Job(tmp_path, "demo", *argv, "--workdir", str(work))
    try:
        job.line(lambda line: "peer 0: step" in line and "peer 1: step" in line, 240)  # both peers train
        _stop(job, sig, style)
        for log in ("dht.log", "peer-0.log", "peer-1.log"):
            _quiet(work / log)
        assert all((work / f"peer-{i}.json").exists() for i in range(2)), "a stopped peer wrote no summary"
    finally:
        job.close()


def test_sigkill_of_the_main_process_takes_its_dht_process_and_daemon_along(tmp_path: Path) -> None:
    job = Job(tmp_path, "dht", "dht", "--host-maddrs", LOOPBACK, "--identity", str(tmp_path / "dht.pem"))
    try:
        job.line(lambda line: line.startswith("/ip4/127.0.0.1/"), 120)
        helpers = [p for p in job.descendants() if p.name() != "torch_shm_manager"]
        assert any(p.name() == "p2pd" for p in helpers), helpers
        job.process.kill()
        job.process.wait(10)
        _, alive = psutil.wait_procs(helpers, timeout=15)
        assert not alive, f"the orphaned DHT process or p2p daemon survived: {[p.pid for p in alive]}"
    finally:
        job.close()
