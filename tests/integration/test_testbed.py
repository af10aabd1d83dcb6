"""The namespace testbed (scripts/testbed.py): reachability, shaping, and cleanup in every way out."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scripts.testbed as tb  # as a module: pytest would collect functions named test*
from scripts.testbed import TestbedConfig, list_namespaces, measure_mbit, transfer
from tests.support import poll_until

ROOT = Path(__file__).resolve().parents[2]
RATE_MBIT = 40.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(tb.testbed_unavailable() is not None, reason=str(tb.testbed_unavailable())),
]


def test_nodes_reach_each_other_both_ways() -> None:
    with tb.testbed(TestbedConfig(peers=2)) as bed:
        a, b = bed.nodes
        assert a.ip != b.ip
        assert a.name != b.name
        assert a.command(["true"]) == ["ip", "netns", "exec", a.name, "true"]
        for src, dst in ((a, b), (b, a)):
            sent_before, received_before = src.tx_bytes(), dst.rx_bytes()
            received, _ = transfer(src, dst, 100_000, timeout=10.0)
            assert received == 100_000
            assert src.tx_bytes() - sent_before >= 100_000
            assert dst.rx_bytes() - received_before >= 100_000


def test_throughput_matches_the_configured_rate() -> None:
    with tb.testbed(TestbedConfig(peers=2, rate_mbit=RATE_MBIT)) as bed:
        a, b = bed.nodes
        for src, dst in ((a, b), (b, a)):  # upload of one side, download of the other
            measured = measure_mbit(src, dst, nbytes=5_000_000, timeout=8.0)
            assert 0.6 * RATE_MBIT <= measured <= 1.15 * RATE_MBIT, f"{measured:.1f} Mbit/s at {RATE_MBIT} configured"


def test_namespaces_are_removed_on_exit() -> None:
    with tb.testbed(TestbedConfig(peers=2, rate_mbit=RATE_MBIT)) as bed:
        names = bed.namespaces
        assert set(names) <= set(list_namespaces())
        # a process still running inside is killed, not left holding the namespace
        sleeper = bed.nodes[0].popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert not set(names) & set(list_namespaces())
    assert sleeper.poll() is not None


def test_namespaces_are_removed_after_an_exception() -> None:
    names: list[str] = []
    try:
        with tb.testbed(TestbedConfig(peers=2)) as bed:
            names = bed.namespaces
            raise RuntimeError("boom")
    except RuntimeError as e:
        assert str(e) == "boom"  # noqa: PT017 - the with-block is the code under test
    assert names
    assert not set(names) & set(list_namespaces())


def test_namespaces_are_removed_on_sigterm() -> None:
    script = (
        "import sys, time\n"
        "from scripts.testbed import TestbedConfig, testbed\n"
        "with testbed(TestbedConfig(peers=2, rate_mbit=10)) as bed:\n"
        "    print(' '.join(bed.namespaces), flush=True)\n"
        "    time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        _check_sigterm_cleanup(proc)


def _check_sigterm_cleanup(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10.0)
        assert ready, "the child did not build its testbed in time"
        names = proc.stdout.readline().split()
        assert len(names) == 3
        assert set(names) <= set(list_namespaces())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10.0) == 128 + signal.SIGTERM
        poll_until(lambda: not set(names) & set(list_namespaces()), timeout=5.0, what="namespaces to go")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_jumbo_frames_cross_a_shaped_link_at_the_configured_rate() -> None:
    with tb.testbed(TestbedConfig(peers=2, rate_mbit=RATE_MBIT, mtu=9000, burst_kbit=160)) as bed:
        a, b = bed.nodes
        assert tb._run(a.command(["cat", f"/sys/class/net/{a.device}/mtu"])).strip() == "9000"
        measured = measure_mbit(a, b, nbytes=5_000_000, timeout=8.0)
        assert 0.6 * RATE_MBIT <= measured <= 1.15 * RATE_MBIT, f"{measured:.1f} Mbit/s at {RATE_MBIT} configured"


def test_config_is_validated() -> None:
    for bad in (
        TestbedConfig(peers=0),
        TestbedConfig(peers=2, rate_mbit=0),
        TestbedConfig(peers=2, prefix="x-y"),
        TestbedConfig(peers=2, mtu=100),
        TestbedConfig(peers=2, rate_mbit=100, mtu=9000),  # a 64 kbit bucket holds no 9000-byte frame
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each message differs
            bad.validate()
    start = time.monotonic()
    with pytest.raises(ValueError, match="peers"), tb.testbed(TestbedConfig(peers=0)):
        pass
    assert time.monotonic() - start < 1.0
