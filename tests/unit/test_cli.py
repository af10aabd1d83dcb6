"""The ``swarmnet`` command line without any network: help texts, flag checks, logging, output formats."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import swarmnet.peers.daemon as daemon_module
from swarmnet.cli.common import LOGLEVEL_ENV, ExitCode, configure_logging
from swarmnet.cli.main import build_parser, main
from swarmnet.cli.peer import config_from_args
from swarmnet.cli.status import member_to_json, render_table, swarm_to_json
from swarmnet.identity import Identity
from swarmnet.membership import DeviceInfo, Member, MembershipConfig, PeerInfo
from swarmnet.peers.daemon import DEFAULT_IDENTITY_PATH
from swarmnet.transport.hivemind_transport import HivemindTransport
from swarmnet.version import __version__

SUBCOMMANDS = ("dht", "peer", "status", "local")


# --------------------------------------------------------------------------- logging isolation


@contextlib.contextmanager
def _logging_sandbox() -> Iterator[None]:
    """Let ``configure_logging`` (``basicConfig(force=True)``) run, then put the root logger back exactly.

    pytest's own capture handlers are detached first, so ``force=True`` cannot close them, and are
    re-attached afterwards; the handlers ``basicConfig`` added are removed and closed.
    """
    root, hivemind_logger = logging.getLogger(), logging.getLogger("hivemind")
    saved_handlers, saved_level, saved_hivemind_level = root.handlers[:], root.level, hivemind_logger.level
    for handler in saved_handlers:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        hivemind_logger.setLevel(saved_hivemind_level)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No inherited $SWARMNET_LOGLEVEL, and logger levels as they were whatever a test did."""
    monkeypatch.delenv(LOGLEVEL_ENV, raising=False)
    root, hivemind_logger = logging.getLogger(), logging.getLogger("hivemind")
    levels = root.level, hivemind_logger.level
    yield
    root.setLevel(levels[0])
    hivemind_logger.setLevel(levels[1])


@pytest.fixture
def logging_sandbox() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """Wrap calls that configure logging: ``with logging_sandbox(): ...``."""
    return _logging_sandbox


@pytest.fixture
def run_cli() -> Callable[..., int]:
    """Call ``main(argv)`` inside the logging sandbox; returns the exit code it returns."""

    def run(*argv: str) -> int:
        with _logging_sandbox():
            return main(list(argv))

    return run


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make starting a transport or probing this machine fail loudly; returns what was attempted."""
    attempted: list[str] = []

    async def no_transport(*args: Any, **kwargs: Any) -> Any:
        attempted.append("transport")
        raise AssertionError("the network started although the command should have stopped before it")

    def no_probe(*args: Any, **kwargs: Any) -> Any:
        attempted.append("probe")
        raise AssertionError("the resource probe ran although the command should have stopped before it")

    monkeypatch.setattr(HivemindTransport, "create", no_transport)
    monkeypatch.setattr(daemon_module, "probe_resources", no_probe)
    return attempted


def _system_exit(argv: list[str]) -> SystemExit:
    with _logging_sandbox(), pytest.raises(SystemExit) as caught:
        main(argv)
    return caught.value


# --------------------------------------------------------------------------- help and version


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _system_exit(["--version"]).code == 0
    assert capsys.readouterr().out == f"swarmnet {__version__}\n"


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert _system_exit(["--help"]).code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: swarmnet")
    for command in SUBCOMMANDS:
        assert command in out


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert _system_exit([]).code == ExitCode.USAGE
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _system_exit([command, "--help"]).code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: swarmnet {command}")
    assert "example" in out
    assert f"swarmnet {command}" in out.split("example", 1)[1]  # the example runs this very subcommand


def test_python_dash_m_swarmnet_prints_the_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swarmnet", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"swarmnet {__version__}\n"


# --------------------------------------------------------------------------- usage errors, before any network


def test_status_without_initial_peers_is_a_usage_error(
    run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str], no_network: list[str]
) -> None:
    assert run_cli("status") == ExitCode.USAGE
    captured = capsys.readouterr()
    assert "--initial-peers is required" in captured.err
    assert captured.out == ""
    assert no_network == []


def test_peer_heartbeat_longer_than_half_the_ttl_is_a_usage_error(
    run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str], no_network: list[str], tmp_path: Path
) -> None:
    key = tmp_path / "identity.pem"
    assert run_cli("peer", "--heartbeat", "20", "--ttl", "10", "--identity", str(key)) == ExitCode.USAGE
    assert "heartbeat_interval" in capsys.readouterr().err
    assert not key.exists()  # rejected before the key was created
    assert no_network == []


def test_peer_with_an_empty_role_is_a_usage_error(
    run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str], no_network: list[str], tmp_path: Path
) -> None:
    key = tmp_path / "identity.pem"
    assert run_cli("peer", "--roles", "", "--identity", str(key)) == ExitCode.USAGE
    assert "roles" in capsys.readouterr().err
    assert not key.exists()
    assert no_network == []


def test_peer_with_an_initial_peer_lacking_its_id_is_a_usage_error(
    run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str], no_network: list[str], tmp_path: Path
) -> None:
    key = tmp_path / "identity.pem"
    assert run_cli("peer", "--initial-peers", "/ip4/203.0.113.7/tcp/31337", "--identity", str(key)) == ExitCode.USAGE
    assert "/p2p/" in capsys.readouterr().err
    assert not key.exists()
    assert no_network == []


def test_local_with_no_peers_is_a_usage_error(
    run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str], no_network: list[str]
) -> None:
    assert run_cli("local", "--peers", "0") == ExitCode.USAGE
    assert "--peers must be at least 1" in capsys.readouterr().err
    assert no_network == []


def test_peer_with_a_world_readable_key_exits_before_the_network_starts(
    run_cli: Callable[..., int], capsys: pytest.CaptureFixture[str], no_network: list[str], tmp_path: Path
) -> None:
    # peers/daemon.py loads the identity before it starts the transport; `no_network` fails the test otherwise.
    key = tmp_path / "identity.pem"
    pem = Identity.generate().private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key.write_bytes(pem)
    key.chmod(0o644)

    code = run_cli("peer", "--identity", str(key), "--benchmark-seconds", "0", "--host-maddrs", "/ip4/127.0.0.1/tcp/0")

    assert code == ExitCode.IDENTITY
    assert no_network == []
    err = capsys.readouterr().err
    assert "readable by other users" in err
    assert "chmod 600" in err
    assert key.read_bytes() == pem  # the key is reported, never rewritten


def test_an_unknown_log_level_exits_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    exit_ = _system_exit(["status", "--log-level", "NOPE", "--initial-peers", "/ip4/127.0.0.1/tcp/1"])
    assert isinstance(exit_.code, str)
    assert "unknown log level 'NOPE'" in exit_.code
    assert "DEBUG" in exit_.code
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- configure_logging


@pytest.mark.parametrize(
    ("env", "flag", "root_level", "hivemind_level"),
    [
        (None, None, logging.INFO, logging.WARNING),  # the default
        ("DEBUG", None, logging.DEBUG, logging.DEBUG),  # $SWARMNET_LOGLEVEL is honoured; hivemind follows DEBUG
        ("debug", None, logging.DEBUG, logging.DEBUG),  # case-insensitive
        ("INFO", None, logging.INFO, logging.WARNING),  # hivemind stays quieter than INFO
        ("ERROR", None, logging.ERROR, logging.ERROR),  # but is never louder than asked
        ("DEBUG", "WARNING", logging.WARNING, logging.WARNING),  # the flag beats the environment
    ],
)
def test_configure_logging_levels(
    env: str | None,
    flag: str | None,
    root_level: int,
    hivemind_level: int,
    monkeypatch: pytest.MonkeyPatch,
    logging_sandbox: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    if env is not None:
        monkeypatch.setenv(LOGLEVEL_ENV, env)
    with logging_sandbox():
        configure_logging(flag)
        assert logging.getLogger().level == root_level
        assert logging.getLogger("hivemind").level == hivemind_level


def test_configure_logging_writes_to_stderr(
    capsys: pytest.CaptureFixture[str], logging_sandbox: Callable[[], contextlib.AbstractContextManager[None]]
) -> None:
    with logging_sandbox():
        configure_logging("INFO")
        logging.getLogger("swarmnet.test").info("hello from the test")
        logging.getLogger("swarmnet.test").debug("not shown at INFO")
    captured = capsys.readouterr()
    assert "INFO swarmnet.test: hello from the test" in captured.err
    assert "not shown" not in captured.err
    assert captured.out == ""


def test_the_logging_sandbox_restores_the_root_logger(
    logging_sandbox: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    root = logging.getLogger()
    before = root.handlers[:], root.level, logging.getLogger("hivemind").level
    with logging_sandbox():
        configure_logging("DEBUG")
        assert root.level == logging.DEBUG
    assert (root.handlers, root.level, logging.getLogger("hivemind").level) == before


# --------------------------------------------------------------------------- peer flags -> DaemonConfig


def test_config_from_args_maps_every_flag(tmp_path: Path) -> None:
    bootstrap = f"/ip4/203.0.113.7/tcp/31337/p2p/{Identity.generate().peer_id}"
    second = f"/ip4/10.0.0.2/tcp/4001/p2p/{Identity.generate().peer_id}"
    args = build_parser().parse_args(
        [
            "peer", "--identity", str(tmp_path / "k.pem"), "--ttl", "30", "--heartbeat", "7",
            "--roles", "volunteer", "trainer", "--swarm", "run-1", "--bandwidth-mbps", "250",
            "--benchmark-seconds", "0.1", "--initial-peers", bootstrap, second,
            "--host-maddrs", "/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0", "--announce-maddrs", "/ip4/198.51.100.1/tcp/9",
            "--client-mode",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.identity_path == tmp_path / "k.pem"
    assert config.roles == ("volunteer", "trainer")
    assert config.bandwidth_mbps == 250.0
    assert config.benchmark_seconds == 0.1
    assert config.membership.swarm == "run-1"
    assert config.membership.ttl == 30.0
    assert config.membership.heartbeat_interval == 7.0
    assert config.network.initial_peers == (bootstrap, second)
    assert config.network.host_maddrs == ("/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0")
    assert config.network.announce_maddrs == ("/ip4/198.51.100.1/tcp/9",)
    assert config.network.client_mode is True
    config.validate()


def test_config_from_args_defaults() -> None:
    config = config_from_args(build_parser().parse_args(["peer"]))
    defaults = MembershipConfig()
    assert config.identity_path == DEFAULT_IDENTITY_PATH
    assert config.roles == ("volunteer",)
    assert config.bandwidth_mbps is None
    assert config.membership.swarm == defaults.swarm
    assert config.membership.ttl == defaults.ttl
    assert config.membership.heartbeat_interval == defaults.heartbeat_interval
    assert config.network.initial_peers == ()
    assert config.network.host_maddrs == ("/ip4/0.0.0.0/tcp/0",)
    assert config.network.client_mode is False
    config.validate()


# --------------------------------------------------------------------------- status output

NOW = 1_000.0


def _member(
    *,
    roles: tuple[str, ...] = ("volunteer",),
    device: DeviceInfo | None = None,
    gflops: float | None = None,
    bandwidth: float | None = None,
    seen_ago: float = 3.0,
    expires_in: float = 17.0,
) -> Member:
    info = PeerInfo(
        roles=roles,
        device=device or DeviceInfo(),
        compute_gflops=gflops,
        bandwidth_mbps=bandwidth,
        bandwidth_source="configured" if bandwidth else "unknown",
        addresses=("/ip4/127.0.0.1/tcp/4001",),
        started_at=NOW - 60,
    )
    return Member(Identity.generate().peer_id, info, last_seen=NOW - seen_ago, expires_at=NOW + expires_in)


@pytest.fixture
def members() -> list[Member]:
    return [
        _member(
            roles=("volunteer", "trainer"),
            device=DeviceInfo(kind="cuda", name="NVIDIA H100 80GB HBM3", memory_bytes=80 * 2**30, cpu_count=16),
            gflops=51234.4,
            bandwidth=1000.0,
        ),
        _member(device=DeviceInfo(kind="cpu", name="x" * 100), seen_ago=8.0, expires_in=2.0),  # gflops, link unknown
    ]


def test_render_table_has_a_header_a_row_per_member_and_a_count(members: list[Member]) -> None:
    lines = render_table(members, NOW).splitlines()
    assert len(lines) == 1 + len(members) + 1
    header, rows, count = lines[0], lines[1:-1], lines[-1]
    assert header.split() == ["PEER", "ID", "ROLES", "DEVICE*", "GFLOPS*", "LINK*", "VERSION", "SEEN", "EXPIRES"]
    assert count == "2 live peer(s); * self-reported, unverified"

    gpu, cpu = rows
    assert gpu.startswith(members[0].peer_id)
    assert "volunteer,trainer" in gpu
    assert "cuda:NVIDIA H100 80GB HBM3" in gpu
    assert "51234" in gpu
    assert "1000 Mbit/s" in gpu
    assert "3s ago" in gpu
    assert "in 17s" in gpu

    assert cpu.startswith(members[1].peer_id)
    assert "cpu:" + "x" * 24 in cpu
    assert "x" * 25 not in cpu  # the device column is cut at 28 characters
    assert cpu.split().count("?") == 1  # unknown gflops
    assert "unmeasured" in cpu.split()  # no link figure yet
    assert "8s ago" in cpu
    assert "in 2s" in cpu
    for row in rows:
        assert __version__ in row.split()
    # Columns line up: every row's cell starts where its header does.
    cells = {"ROLES": ("volunteer,trainer", "volunteer"), "DEVICE": ("cuda:", "cpu:"), "VERSION": (__version__,) * 2}
    for column, expected in cells.items():
        start = header.index(column)
        for row, cell in zip(rows, expected, strict=True):
            assert row[start:].startswith(cell), (column, row)


def test_render_table_without_members() -> None:
    lines = render_table([], NOW).splitlines()
    assert lines[0].startswith("PEER ID")
    assert lines[1:] == ["0 live peer(s); * self-reported, unverified"]


def test_swarm_to_json_is_serialisable_and_complete(members: list[Member]) -> None:
    decoded = json.loads(json.dumps(swarm_to_json("run-1", members, NOW)))
    assert decoded["swarm"] == "run-1"
    assert decoded["time"] == NOW
    assert decoded["count"] == 2
    peers = decoded["peers"]
    assert [p["peer_id"] for p in peers] == [m.peer_id for m in members]
    assert peers[0]["roles"] == ["volunteer", "trainer"]
    assert peers[1]["roles"] == ["volunteer"]
    assert all(p["version"] == __version__ for p in peers)
    assert peers[0]["device"]["kind"] == "cuda"
    assert peers[0]["device"]["memory_bytes"] == 80 * 2**30
    assert peers[0]["compute_gflops"] == 51234.4
    assert peers[0]["bandwidth_mbps"] == 1000.0
    assert peers[0]["bandwidth_source"] == "configured"
    assert peers[1]["compute_gflops"] is None
    assert peers[1]["bandwidth_mbps"] is None
    assert peers[1]["last_seen"] == NOW - 8.0
    assert peers[1]["expires_at"] == NOW + 2.0


def test_member_to_json_fields(members: list[Member]) -> None:
    entry = member_to_json(members[0])
    assert set(entry) >= {"peer_id", "roles", "version", "protocol_version", "state", "device", "addresses"}
    assert entry["state"] == "online"
    assert entry["addresses"] == ["/ip4/127.0.0.1/tcp/4001"]
    assert entry["protocol_version"] == members[0].info.protocol_version
    assert entry["started_at"] == NOW - 60
