"""Helpers for tests: managed `swarmnet` processes and DHT pairs; polling (re-exported from ``swarmnet.testing``)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from swarmnet.testing import apoll_until, poll_until

__all__ = ["SwarmnetProcess", "apoll_until", "poll_until", "with_dht_pair"]


async def with_dht_pair(check: Callable[..., Awaitable[None]], *, client_mode: bool = False) -> None:
    """Start alice (serving the DHT) and bob (bootstrapped from her; ``client_mode`` as given), each with
    its own DHT process and p2p daemon, run ``check(alice, alice_id, bob, bob_id)``, then shut both down."""
    from swarmnet.identity import Identity
    from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

    alice_id, bob_id = Identity.generate(), Identity.generate()
    alice = await HivemindTransport.create(alice_id)
    try:
        initial = tuple(await alice.visible_addresses())
        bob = await HivemindTransport.create(bob_id, HivemindConfig(initial_peers=initial, client_mode=client_mode))
        try:
            await check(alice, alice_id, bob, bob_id)
        finally:
            await bob.shutdown()
    finally:
        await alice.shutdown()


class SwarmnetProcess:
    """A ``python -m swarmnet ...`` child with its stdout lines queued and stderr in a log file."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, *, new_session: bool = False, loglevel: str = "DEBUG"
    ) -> None:
        """``new_session``: in a session and process group of its own, as a shell starts a job."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "swarmnet", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=new_session,
            env={**os.environ, "SWARMNET_LOGLEVEL": loglevel},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float) -> str:
        """The next stdout line, or fail after ``timeout`` seconds."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name} printed nothing in {timeout}s; log:\n{self.log_tail()}") from None

    def line_matching(self, ready: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first stdout line (stripped) that ``ready`` accepts. Fails after ``timeout`` seconds, or as
        soon as the process exits without printing one; the failure names ``what`` and ends with the log."""

        def matched() -> str | None:
            try:
                line = self.lines.get(timeout=0.2).strip()
            except queue.Empty:
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited ({self.process.returncode}) before {what}") from None
                return None
            return line if ready(line) else None

        try:
            return poll_until(matched, timeout=timeout, interval=0, what=f"{self.name}: {what}")
        except AssertionError as error:
            raise AssertionError(f"{error}; log:\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's stderr log, for failure messages."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process."""
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit and return the exit code."""
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 20 s. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
