"""A wrong address on the command line is refused with an example that the same command accepts."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmnet.cli.common import ExitCode
from swarmnet.cli.main import main
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.transport.hivemind_transport import HivemindConfig

EXAMPLE = re.compile(r"(/ip4/\S+?)(?:\)|$|\s)")


@pytest.fixture
def cli_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command reconfigures the root logger (``basicConfig(force=True)``, which closes the handlers it
    replaces): pytest's handlers are detached meanwhile, and the root logger is put back afterwards."""
    monkeypatch.delenv("SWARMNET_LOGLEVEL", raising=False)
    root, hivemind = logging.getLogger(), logging.getLogger("hivemind")
    saved, level, hivemind_level = root.handlers[:], root.level, hivemind.level
    for handler in saved:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
        hivemind.setLevel(hivemind_level)


def _refusal(config: HivemindConfig) -> str:
    with pytest.raises(ConfigError) as refused:
        config.validate()
    return str(refused.value)


def _with_real_id(example: str) -> str:
    return example.replace("12D3KooW...", Identity.generate().peer_id)


@pytest.mark.parametrize("address", ["/ip4/203.0.113.7/tcp/31337", "203.0.113.7:31337"])
def test_an_initial_peer_without_its_id_gets_a_complete_example(address: str) -> None:
    message = _refusal(HivemindConfig(initial_peers=(address,)))
    assert "/ip4/203.0.113.7/tcp/31337/p2p/12D3KooW..." in message, message
    example = next(e for e in EXAMPLE.findall(message) if "/p2p/" in e)
    HivemindConfig(initial_peers=(_with_real_id(example),)).validate()  # the advice, followed, is accepted


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (HivemindConfig(host_maddrs=("0.0.0.0:31337",)), "host_maddrs"),
        (HivemindConfig(announce_maddrs=("203.0.113.7:31337",)), "announce_maddrs"),
    ],
)
def test_listen_and_announce_addresses_get_examples_without_a_peer_id(config: HivemindConfig, field: str) -> None:
    message = _refusal(config)
    (example,) = EXAMPLE.findall(message)
    assert "/p2p/" not in example, message
    HivemindConfig(**{field: (example,)}).validate()  # type: ignore[arg-type]


def test_the_peer_command_prints_the_example_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_logging: None
) -> None:
    argv = ["peer", "--initial-peers", "/ip4/203.0.113.7/tcp/31337", "--identity", str(tmp_path / "id.pem")]
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "lacks its peer id" in err, err
    assert "/ip4/203.0.113.7/tcp/31337/p2p/12D3KooW..." in err, err
    assert not (tmp_path / "id.pem").exists()  # refused before even creating an identity
