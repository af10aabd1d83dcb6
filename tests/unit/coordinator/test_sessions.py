"""Session tokens, the revocation list, the replay window and its journal, with clocks under test control."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest

from swarmnet.coordinator.journal import Journal
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.replay import ReplayWindow
from swarmnet.coordinator.revocations import Revocations
from swarmnet.coordinator.sessions import SESSION_BYTES, SessionTokens
from swarmnet.errors import ConfigError
from swarmnet.federated.loopback import is_local_target, is_loopback_host


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _refusal(call: object) -> str:
    with pytest.raises(Rejected) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    return caught.value.message


def test_a_token_is_bound_to_its_client_and_expires() -> None:
    clock = Clock()
    tokens = SessionTokens(os.urandom(32), ttl_s=60.0, clock=clock)
    token, issued_ms = tokens.issue("alice")
    assert len(token) == SESSION_BYTES
    assert tokens.check("alice", token) == issued_ms
    assert "invalid" in _refusal(lambda: tokens.check("bob", token))
    clock.now += 59.9
    assert tokens.check("alice", token) == issued_ms
    clock.now += 0.1
    assert "expired" in _refusal(lambda: tokens.check("alice", token))


def test_a_token_cannot_be_extended_forged_or_carried_to_another_secret() -> None:
    clock = Clock()
    tokens = SessionTokens(os.urandom(32), ttl_s=60.0, clock=clock)
    token, _ = tokens.issue("alice")
    later = bytearray(token)
    later[1:9] = (int.from_bytes(token[1:9], "big") + 3_600_000).to_bytes(8, "big")  # claim a later issue time
    assert "invalid" in _refusal(lambda: tokens.check("alice", bytes(later)))
    assert "malformed" in _refusal(lambda: tokens.check("alice", token[:-1]))
    assert "malformed" in _refusal(lambda: tokens.check("alice", b""))
    assert "malformed" in _refusal(lambda: tokens.check("alice", b"\x02" + token[1:]))
    other = SessionTokens(os.urandom(32), ttl_s=60.0, clock=clock)
    assert "invalid" in _refusal(lambda: other.check("alice", token))


def test_a_token_from_the_future_is_refused() -> None:
    clock = Clock()
    tokens = SessionTokens(os.urandom(32), ttl_s=3600.0, clock=clock)
    token, _ = tokens.issue("alice")
    clock.now -= 120  # the coordinator's clock went back two minutes
    assert "future" in _refusal(lambda: tokens.check("alice", token))


def test_revocations_persist_and_are_reread_when_the_file_changes(tmp_path: Path) -> None:
    reader = Revocations(tmp_path)
    assert reader.lookup("alice") is None
    Revocations(tmp_path).revoke("alice", now_ms=1000)  # another process: the command line
    entry = reader.lookup("alice")
    assert entry is not None
    assert entry.banned
    assert entry.not_before_ms == 1000
    assert reader.banned() == {"alice"}
    assert Revocations(tmp_path).reinstate("alice")
    entry = reader.lookup("alice")
    assert entry is not None
    assert not entry.banned
    assert entry.not_before_ms == 1000
    assert not Revocations(tmp_path).reinstate("bob")
    assert json.loads((tmp_path / "revoked.json").read_text())["clients"]["alice"]["not_before_ms"] == 1000


def test_a_malformed_revocation_list_stops_a_start_but_not_a_running_coordinator(tmp_path: Path) -> None:
    running = Revocations(tmp_path)
    running.revoke("alice", now_ms=5)
    (tmp_path / "revoked.json").write_text("{not json")
    entry = running.lookup("alice")  # keeps what it read before, logs the error
    assert entry is not None
    assert entry.banned
    with pytest.raises(ConfigError, match="malformed revocation list"):
        Revocations(tmp_path)


def test_the_replay_window_survives_a_restart_and_forgets_only_stale_nonces(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "nonces.journal"
    window = ReplayWindow(path, window_s=300.0, clock=clock)
    fresh, stale = os.urandom(16), os.urandom(16)
    window.remember(stale, int((clock.now - 200) * 1000))
    window.remember(fresh, int(clock.now * 1000))
    clock.now += 150  # stale's timestamp is now 350 s old: a replay fails on the timestamp anyway
    restarted = ReplayWindow(path, window_s=300.0, clock=clock)
    assert restarted.seen(fresh)
    assert not restarted.seen(stale)
    assert len(restarted) == 1
    assert len(path.read_text().splitlines()) == 1  # compacted on load


def test_a_full_replay_window_refuses_rather_than_forgets(tmp_path: Path) -> None:
    clock = Clock()
    window = ReplayWindow(tmp_path / "nonces.journal", window_s=300.0, capacity=3, clock=clock)
    for _ in range(3):
        window.remember(os.urandom(16), int(clock.now * 1000))
    with pytest.raises(Rejected) as caught:
        window.remember(os.urandom(16), int(clock.now * 1000))
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    clock.now += 301
    window.remember(os.urandom(16), int(clock.now * 1000))  # the old ones aged out
    assert len(window) == 1


def test_the_journal_skips_a_torn_last_line_and_appends_after_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append({"a": 1})
    with (tmp_path / "j").open("ab") as handle:
        handle.write(b'{"a": 2, "tor')  # a crash mid-append
    journal.append({"a": 3})
    assert Journal(tmp_path / "j").read() == [{"a": 1}, {"a": 3}]
    journal.rewrite([{"b": 1}])
    assert journal.read() == [{"b": 1}]
    assert journal.lines == 1


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False), ("coordinator.example", False),
     ("203.0.113.7", False)],
)  # fmt: skip
def test_only_loopback_hosts_count_as_local(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("target", "local"),
    [("127.0.0.1:50051", True), ("localhost:1", True), ("[::1]:5", True), ("dns:///localhost:5", True),
     ("unix:/run/c.sock", True), ("203.0.113.7:50051", False), ("dns:///coordinator:443", False),
     ("ipv4:127.0.0.1:1,10.0.0.1:2", False), ("[2001:db8::1]:50051", False)],
)  # fmt: skip
def test_only_loopback_targets_count_as_local(target: str, local: bool) -> None:
    assert is_local_target(target) is local
