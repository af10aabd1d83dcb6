"""Benchmark: seconds from a stop signal to the exit of each long-running ``swarmnet`` command.

Each row starts one command as a shell would start a job (its own process group), waits until it is
ready (its address, ``ready`` line, first table or first progress line), lets it settle, then sends
SIGINT or SIGTERM in one of three styles:

- ``main``: to the main process only (``kill PID``, systemd's ``KillMode=mixed``);
- ``group``: to its whole process group (Ctrl+C in a terminal, ``kill -- -PGID``);
- ``tree``: to every process it started, wherever they are (systemd's default ``KillMode=control-group``).

It reports the seconds until the main process exited and until every process it had started was gone
(torch's shared-memory manager apart: it leaves by itself a few seconds after its last client, and is
timed in its own column), the exit code, and the WARNING/ERROR lines in its log. The baseline row,
``hivemind``, is a bare process that starts a ``hivemind.DHT`` and calls ``DHT.shutdown()`` on the
signal: what the library alone costs on this machine, interpreter exit included. Prints a table and
writes JSON (default artifacts/bench/stop_time.json).

    .venv/bin/python scripts/bench/stop_time.py
    .venv/bin/python scripts/bench/stop_time.py --commands dht peer --styles group --signals SIGTERM
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch
from safetensors.torch import save_file

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
STYLES = ("main", "group", "tree")
# hivemind renames the WARNING level to WARN for every logger, ours included.
_COMPLAINT = re.compile(r"\b(WARN|WARNING|ERROR|CRITICAL)\b|Traceback")
COMMANDS = ("hivemind", "dht", "peer", "trainer", "monitor", "coordinator", "local", "demo")

# The baseline: hivemind's DHT with its own shutdown, in a process that exits normally.
_HIVEMIND_ONLY = """
import signal, threading, hivemind
dht = hivemind.DHT(start=True, host_maddrs=["/ip4/127.0.0.1/tcp/0"])
print(dht.get_visible_maddrs()[0], flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
dht.shutdown()
"""


@dataclass(frozen=True)
class Job:
    """How to start one command and how to tell that it is ready."""

    argv: list[str]
    ready: Callable[[str], bool]


@dataclass
class Row:
    """One measured stop."""

    command: str
    style: str
    signal: str
    exit_code: int | None
    exit_s: float | None  # signal to the main process's exit
    all_gone_s: float | None  # signal to the last of its processes gone (torch_shm_manager apart)
    shm_manager_gone_s: float | None  # signal to torch_shm_manager's exit, when it had one
    processes: int  # processes it had started (the main one excluded)
    left_running: int
    warnings: list[str]
    log_after_signal: list[str]  # the log's last lines after the signal


def _swarmnet(*argv: str) -> list[str]:
    return [sys.executable, "-m", "swarmnet", *argv]


def _jobs(bootstrap: str) -> dict[str, Callable[[Path], Job]]:
    """Each command's argv in a fresh folder, joining the bench's bootstrap node where it needs a swarm."""
    peer = ["peer", "--initial-peers", bootstrap, "--host-maddrs", LOOPBACK, "--swarm", "bench", "--ttl", "60"]
    peer += ["--heartbeat", "5", "--benchmark-seconds", "0", "--bandwidth-mbps", "100"]
    trainer = ["--role", "trainer", "--run", "bench", "--preset", "tiny", "--inner-steps", "10", "--threads", "1"]
    trainer += ["--progress", "json"]
    demo = ["demo", "--peers", "2", "--preset", "tiny", "--steps", "100000", "--inner-steps", "10"]

    def coordinator(d: Path) -> Job:
        adapter = d / "adapter.safetensors"
        save_file({"lora_A.weight": torch.zeros(4, 16), "lora_B.weight": torch.zeros(16, 4)}, str(adapter))
        argv = ["coordinator", "--state-dir", str(d / "state"), "--initial-adapter", str(adapter), "--port", "0"]
        return Job(_swarmnet(*argv, "--initial-peers", bootstrap), lambda line: line.startswith("127.0.0.1:"))

    return {
        "hivemind": lambda d: Job([sys.executable, "-c", _HIVEMIND_ONLY], lambda line: line.startswith("/ip4/")),
        "dht": lambda d: Job(
            _swarmnet("dht", "--host-maddrs", LOOPBACK, "--identity", str(d / "id.pem")),
            lambda line: line.startswith("/ip4/"),
        ),
        "peer": lambda d: Job(
            _swarmnet(*peer, "--identity", str(d / "id.pem")), lambda line: line.startswith("ready")
        ),
        "trainer": lambda d: Job(
            _swarmnet(*peer, "--identity", str(d / "id.pem"), *trainer),
            lambda line: line.startswith("{"),  # training has begun
        ),
        "monitor": lambda d: Job(
            _swarmnet("monitor", "--initial-peers", bootstrap, "--swarm", "bench", "--port", "0"),
            lambda line: line.startswith("serving "),
        ),
        "coordinator": coordinator,
        "local": lambda d: Job(
            _swarmnet("local", "--peers", "2", "--ttl", "60", "--interval", "1"),
            lambda line: line.startswith("2 live peer(s)"),
        ),
        "demo": lambda d: Job(
            _swarmnet(*demo, "--workdir", str(d / "demo")),
            lambda line: line.startswith("peer 0: step"),  # the peers are training
        ),
    }


class Started:
    """A command started as a job in its own process group, with its stdout lines queued."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self._log = log.open("wb")
        self.log_path = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._log, text=True, start_new_session=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def wait_for(self, ready: Callable[[str], bool], timeout: float) -> str:
        """The first stdout line for which ``ready`` holds; fails after ``timeout`` or if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if ready(line):
                return line
        raise RuntimeError(f"not ready in {timeout:.0f}s; log:\n{self.log_path.read_text()[-2000:]}")

    def descendants(self) -> list[psutil.Process]:
        """Every process it started, however deep."""
        with contextlib.suppress(psutil.Error):
            return list(psutil.Process(self.process.pid).children(recursive=True))
        return []

    def close(self) -> None:
        """Kill whatever is left (the whole group and every descendant) and close the pipes."""
        for child in self.descendants():
            with contextlib.suppress(psutil.Error):
                child.kill()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def measure(name: str, job: Job, style: str, sig: signal.Signals, folder: Path, settle: float) -> Row:
    """Start ``job``, stop it with ``sig`` in ``style``, and time the stop."""
    started = Started(job.argv, folder / "stderr.log")
    try:
        started.wait_for(job.ready, timeout=240)
        time.sleep(settle)  # let it finish what readiness set off (announcements, first reads)
        children = started.descendants()
        mark = started.log_path.stat().st_size
        t0 = time.monotonic()
        if style == "main":
            started.process.send_signal(sig)
        elif style == "group":
            os.killpg(started.process.pid, sig)
        else:
            for process in [psutil.Process(started.process.pid), *children]:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
        try:
            code: int | None = started.process.wait(60)
            exit_s: float | None = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            code, exit_s = None, None
        ours = [c for c in children if not _is_shm_manager(c)]
        _, alive = psutil.wait_procs(ours, timeout=30)
        all_gone = None if alive or exit_s is None else max(time.monotonic() - t0, exit_s)
        _, shm_alive = psutil.wait_procs([c for c in children if c not in ours], timeout=30)
        shm_gone = None if shm_alive or len(ours) == len(children) else time.monotonic() - t0
        with started.log_path.open("rb") as log:
            log.seek(mark)
            tail = log.read().decode(errors="replace").splitlines()
        warnings = [line for line in tail if _COMPLAINT.search(line)]
        return Row(
            name, style, sig.name, code, exit_s, all_gone, shm_gone, len(children), len(alive) + len(shm_alive),
            warnings, tail[-8:],
        )  # fmt: skip
    finally:
        started.close()


def _is_shm_manager(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return bool(process.name() == "torch_shm_manager")
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLES))
    parser.add_argument("--signals", nargs="+", choices=("SIGINT", "SIGTERM"), default=["SIGINT", "SIGTERM"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between ready and the signal")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/stop_time.json"))
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="swarmnet-stop-time-") as tmp:
        work = Path(tmp)
        bootstrap = Started(_swarmnet("dht", "--host-maddrs", LOOPBACK, "--identity", str(work / "b.pem")), work / "b")
        try:
            address = bootstrap.wait_for(lambda line: line.startswith("/ip4/"), timeout=240)
            jobs = _jobs(address)
            print(f"{'command':<12} {'style':<6} {'signal':<8} {'code':>4} {'exit s':>7} {'all gone s':>10} "
                  f"{'shm mgr s':>9} {'procs':>5} {'left':>4} warnings")  # fmt: skip
            combinations = itertools.product(args.commands, args.styles, args.signals, range(args.repeats))
            for name, style, sig_name, repeat in combinations:
                folder = work / f"{name}-{style}-{sig_name}-{repeat}"
                folder.mkdir()
                try:
                    row = measure(name, jobs[name](folder), style, signal.Signals[sig_name], folder, args.settle)
                except RuntimeError as e:  # it never got ready: say why, and go on with the others
                    row = Row(name, style, sig_name, None, None, None, None, 0, 0, [str(e)[-300:]], [])
                rows.append(row)
                _print(row)
        finally:
            bootstrap.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {"machine": platform.machine(), "cpus": os.cpu_count()}
    meta["python"] = platform.python_version()
    meta["load_average"] = os.getloadavg()
    args.out.write_text(
        json.dumps({"benchmark": "stop_time", "meta": meta, "rows": [asdict(r) for r in rows]}, indent=2)
    )
    print(f"wrote {args.out}")


def _print(row: Row) -> None:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    first = row.warnings[0][:100] if row.warnings else ""
    print(
        f"{row.command:<12} {row.style:<6} {row.signal:<8} {row.exit_code!s:>4} {seconds(row.exit_s):>7} "
        f"{seconds(row.all_gone_s):>10} {seconds(row.shm_manager_gone_s):>9} {row.processes:>5} "
        f"{row.left_running:>4} {len(row.warnings)} {first}",
        flush=True,
    )


if __name__ == "__main__":
    main()
