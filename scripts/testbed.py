"""A network testbed of Linux namespaces: K peers on one bridge, each link optionally rate-limited.

Layout: a hub namespace holds a Linux bridge; every peer namespace is joined to it by a veth pair and
gets an address on a private /24. Namespaces have no default route, so traffic never leaves them.
With a rate set, both directions of every peer link are shaped with tbf: the peer-side veth egress is
the peer's upload, the hub-side veth egress its download.

    with testbed(TestbedConfig(peers=3, rate_mbit=100)) as bed:
        proc = bed.nodes[0].popen([sys.executable, "-c", "..."])

Everything is removed on exit, on an exception, on SIGTERM/SIGINT and (as a last resort) at exit.
Needs root, ``ip`` and ``tc``. CLI (measures TCP throughput between node 0 and node 1):

    python -m scripts.testbed --peers 3 --rate-mbit 100 --check
    python -m scripts.testbed --cleanup-stale
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

MAX_IFNAME = 15  # IFNAMSIZ - 1


class TestbedError(RuntimeError):
    """An ``ip``/``tc`` command failed, or the testbed was misused."""


@dataclass(frozen=True)
class TestbedConfig:
    """What to build: ``peers`` namespaces, each link shaped to ``rate_mbit`` in both directions (None: unshaped).

    ``burst_kbit`` and ``latency_ms`` are tbf's bucket size and queue limit. tbf counts whole Ethernet frames,
    so TCP goodput is about 0.956x the rate (1448 payload bytes per 1514-byte frame), for any burst from 32
    to 256 kbit (``--check`` measures it; docs/performance.md has the figures).
    """

    __test__ = False  # not a pytest test class despite the name

    peers: int
    rate_mbit: float | None = None
    burst_kbit: int = 64
    prefix: str = "swt"
    latency_ms: int = 400
    # Link MTU. 1500 is the internet's; 9000 (jumbo frames) cuts the kernel's per-packet work, which is
    # what limits a 2-core machine that simulates several peers' links at once (see docs/performance.md).
    mtu: int = 1500

    def validate(self) -> None:
        """Raise ValueError for settings that cannot be built."""
        if not 1 <= self.peers <= 250:
            raise ValueError(f"peers must be in 1..250, got {self.peers}")
        if self.rate_mbit is not None and not 0.01 <= self.rate_mbit <= 100_000:
            raise ValueError(f"rate_mbit must be in 0.01..100000, got {self.rate_mbit}")
        if self.burst_kbit < 8 or self.latency_ms < 1:
            raise ValueError("burst_kbit must be >= 8 and latency_ms >= 1")
        if not 576 <= self.mtu <= 65_535:
            raise ValueError(f"mtu must be in 576..65535, got {self.mtu}")
        if self.rate_mbit is not None and self.burst_kbit * 1000 // 8 < self.mtu + 14:
            raise ValueError(
                f"burst_kbit {self.burst_kbit} holds less than one {self.mtu}-byte frame: tbf would drop it"
            )
        if not (self.prefix.isascii() and self.prefix.isalnum() and 1 <= len(self.prefix) <= 5):
            raise ValueError(f"prefix must be 1..5 ASCII letters/digits, got {self.prefix!r}")


@dataclass(frozen=True)
class Node:
    """One peer namespace: its name, its IPv4 address and its veth device inside the namespace."""

    name: str
    ip: str
    device: str
    _processes: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False, compare=False)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside this namespace (``kwargs`` go to Popen); it is killed when the testbed closes."""
        proc: subprocess.Popen[Any] = subprocess.Popen(self.command(argv), **kwargs)
        self._processes.append(proc)
        return proc

    def _counter(self, name: str) -> int:
        path = f"/sys/class/net/{self.device}/statistics/{name}"
        return int(_run(self.command(["cat", path])).strip())

    def tx_bytes(self) -> int:
        """Bytes sent by this node's device so far."""
        return self._counter("tx_bytes")

    def rx_bytes(self) -> int:
        """Bytes received by this node's device so far."""
        return self._counter("rx_bytes")


@dataclass(frozen=True)
class Testbed:
    """A built testbed: the hub namespace (holding the bridge) and the peer nodes."""

    __test__ = False

    config: TestbedConfig
    hub: str
    subnet: str
    nodes: list[Node]

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of this testbed, hub first."""
        return [self.hub, *(node.name for node in self.nodes)]


def _run(argv: list[str], timeout: float = 20.0) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TestbedError(f"{' '.join(argv)}: {e}") from e
    if done.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def list_namespaces() -> list[str]:
    """Names of all network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()]


def _namespace_pids(namespaces: list[str]) -> list[int]:
    pids: list[int] = []
    for namespace in namespaces:
        with contextlib.suppress(TestbedError):
            pids += [int(p) for p in _run(["ip", "netns", "pids", namespace]).split()]
    return pids


def _kill_namespace_processes(namespaces: list[str], grace: float = 3.0) -> None:
    """SIGTERM every process inside ``namespaces``, SIGKILL those still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _namespace_pids(namespaces)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = _namespace_pids(namespaces)
        if not pids:
            return


def _delete_namespaces(names: list[str]) -> None:
    """Kill processes in, then delete, each namespace that exists; deleting one also removes its veths."""
    present = set(list_namespaces())
    existing = [name for name in names if name in present]
    _kill_namespace_processes(existing)
    for name in existing:
        with contextlib.suppress(TestbedError):
            _run(["ip", "netns", "del", name])


def cleanup_stale(prefix: str = "swt") -> list[str]:
    """Delete leftover namespaces whose names start with ``prefix`` (CLI only: may hit a concurrent run's)."""
    stale = [name for name in list_namespaces() if name.startswith(prefix)]
    _delete_namespaces(stale)
    return stale


def _build(config: TestbedConfig, suffix: str, created: list[str], processes: list[subprocess.Popen[Any]]) -> Testbed:
    """Create the namespaces, bridge, veths, addresses and qdiscs; record each namespace in ``created``."""
    base = f"{config.prefix}{suffix}"
    subnet_octet = int(suffix, 16) % 256
    hub, bridge = f"{base}h", "br0"
    _run(["ip", "netns", "add", hub])
    created.append(hub)
    _run(["ip", "-n", hub, "link", "add", bridge, "type", "bridge"])
    for dev in ("lo", bridge):
        _run(["ip", "-n", hub, "link", "set", dev, "up"])
    nodes = []
    for i in range(config.peers):
        name, device, hub_side = f"{base}p{i}", f"{base}v{i}", f"{base}b{i}"
        assert max(len(device), len(hub_side)) <= MAX_IFNAME
        ip = f"10.213.{subnet_octet}.{i + 1}"
        _run(["ip", "netns", "add", name])
        created.append(name)
        _run(["ip", "link", "add", device, "netns", name, "type", "veth", "peer", "name", hub_side, "netns", hub])
        _run(["ip", "-n", hub, "link", "set", hub_side, "master", bridge])
        if config.mtu != 1500:
            _run(["ip", "-n", hub, "link", "set", hub_side, "mtu", str(config.mtu)])
            _run(["ip", "-n", name, "link", "set", device, "mtu", str(config.mtu)])
        _run(["ip", "-n", hub, "link", "set", hub_side, "up"])
        _run(["ip", "-n", name, "addr", "add", f"{ip}/24", "dev", device])
        for dev in ("lo", device):
            _run(["ip", "-n", name, "link", "set", dev, "up"])
        if config.rate_mbit is not None:
            shape = ["tbf", "rate", f"{round(config.rate_mbit * 1000)}kbit", "burst", f"{config.burst_kbit}kbit"]
            shape += ["latency", f"{config.latency_ms}ms"]
            _run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", device, "root", *shape])  # upload
            _run(["ip", "netns", "exec", hub, "tc", "qdisc", "add", "dev", hub_side, "root", *shape])  # download
        nodes.append(Node(name=name, ip=ip, device=device, _processes=processes))
    return Testbed(config=config, hub=hub, subnet=f"10.213.{subnet_octet}.0/24", nodes=nodes)


@contextlib.contextmanager
def testbed(config: TestbedConfig) -> Iterator[Testbed]:
    """Build a testbed for the duration of the with-block; remove everything it created afterwards."""
    config.validate()
    created: list[str] = []
    processes: list[subprocess.Popen[Any]] = []
    done = False

    def cleanup() -> None:
        nonlocal done
        if done:
            return
        running = [proc for proc in processes if proc.poll() is None]
        _delete_namespaces(created)  # SIGTERM, then SIGKILL, whatever runs inside
        for proc in running:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        done = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    atexit.register(cleanup)
    try:
        yield _build(config, secrets.token_hex(2), created, processes)
    finally:
        for sig in previous:  # a second signal must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        try:
            cleanup()
        finally:
            atexit.unregister(cleanup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@functools.cache
def testbed_unavailable() -> str | None:
    """Why a testbed cannot be built here (a human-readable reason), or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    try:
        with testbed(TestbedConfig(peers=1, rate_mbit=10, prefix="swtq")):
            pass
    except (TestbedError, OSError) as e:
        return f"cannot build a namespace testbed: {e}"
    return None


_RECEIVER = """
import socket, sys, time
s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(1); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); n = 0; t0 = None
while (b := c.recv(1 << 20)):
    t0 = time.monotonic() if t0 is None else t0; n += len(b)
print(n, time.monotonic() - (t0 or time.monotonic()), flush=True)
"""
_SENDER = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
left, buf = int(sys.argv[3]), bytes(1 << 16)
while left > 0:
    c.sendall(buf[:left]); left -= len(buf)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
"""


def transfer(src: Node, dst: Node, nbytes: int, timeout: float = 30.0) -> tuple[int, float]:
    """Send ``nbytes`` over TCP from ``src`` to ``dst``; return (bytes received, seconds from first byte to EOF)."""
    deadline = time.monotonic() + timeout
    receiver = dst.popen([sys.executable, "-c", _RECEIVER, dst.ip], stdout=subprocess.PIPE, text=True)
    sender: subprocess.Popen[Any] | None = None
    try:
        assert receiver.stdout is not None
        ready, _, _ = select.select([receiver.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TestbedError("receiver did not report its port in time")
        port = int(receiver.stdout.readline())
        sender = src.popen([sys.executable, "-c", _SENDER, dst.ip, str(port), str(nbytes)])
        out, _ = receiver.communicate(timeout=max(0.1, deadline - time.monotonic()))
        received, seconds = out.split()
        if sender.wait(timeout=max(0.1, deadline - time.monotonic())) != 0:
            raise TestbedError(f"sender exited with {sender.returncode}")
        return int(received), float(seconds)
    except subprocess.TimeoutExpired as e:
        raise TestbedError(f"transfer of {nbytes} bytes did not finish in {timeout}s") from e
    finally:
        for proc in (receiver, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def measure_mbit(src: Node, dst: Node, nbytes: int = 16_000_000, timeout: float = 30.0) -> float:
    """Measured TCP goodput from ``src`` to ``dst`` in Mbit/s."""
    received, seconds = transfer(src, dst, nbytes, timeout)
    if received != nbytes:
        raise TestbedError(f"sent {nbytes} bytes but {received} arrived")
    return received * 8 / seconds / 1e6


def main(argv: list[str] | None = None) -> int:
    """CLI: build a testbed, optionally measure throughput, remove it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=2)
    parser.add_argument("--rate-mbit", type=float, default=None)
    parser.add_argument("--burst-kbit", type=int, default=TestbedConfig.burst_kbit)
    parser.add_argument("--latency-ms", type=int, default=TestbedConfig.latency_ms)
    parser.add_argument("--mtu", type=int, default=TestbedConfig.mtu)
    parser.add_argument("--megabytes", type=float, default=16.0, help="bytes moved by --check")
    parser.add_argument("--check", action="store_true", help="measure TCP throughput node 0 <-> node 1")
    parser.add_argument("--cleanup-stale", action="store_true", help="delete leftover namespaces and exit")
    parser.add_argument("--prefix", default=TestbedConfig.prefix)
    args = parser.parse_args(argv)
    if args.cleanup_stale:
        print("deleted:", " ".join(cleanup_stale(args.prefix)) or "nothing")
        return 0
    if (reason := testbed_unavailable()) is not None:
        print(f"testbed unavailable: {reason}", file=sys.stderr)
        return 1
    config = TestbedConfig(args.peers, args.rate_mbit, args.burst_kbit, args.prefix, args.latency_ms, args.mtu)
    with testbed(config) as bed:
        for node in bed.nodes:
            print(f"{node.name:<12} {node.ip:<15} {node.device}")
        if args.check and len(bed.nodes) >= 2:
            rate = "unshaped" if args.rate_mbit is None else f"{args.rate_mbit:g}"
            print(f"{'direction':<10} {'configured Mbit/s':>17} {'measured Mbit/s':>15}")
            nbytes = int(args.megabytes * 1e6)
            for src, dst, label in ((bed.nodes[0], bed.nodes[1], "0 -> 1"), (bed.nodes[1], bed.nodes[0], "1 -> 0")):
                print(f"{label:<10} {rate:>17} {measure_mbit(src, dst, nbytes):>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
