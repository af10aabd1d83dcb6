"""Bad network settings fail early with a clear message; a dead bootstrap peer is a StartupError."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from swarmnet.errors import ConfigError, StartupError
from swarmnet.identity import Identity
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

PEER = "12D3KooWEyfa8VxQGDxfVaeZHPUp4qWVaNDsjAaZZohczQZs52YA"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (HivemindConfig(initial_peers=("garbage",)), "not a valid multiaddr"),
        (HivemindConfig(initial_peers=("/ip4/127.0.0.1/tcp/9",)), "lacks its peer id"),
        (HivemindConfig(host_maddrs=()), "at least one host"),
        (HivemindConfig(host_maddrs=("/ip4/999.1.1.1/tcp/0",)), "not a valid multiaddr"),
        (HivemindConfig(announce_maddrs=("/ip4/1.2.3.4/tcp/0",)), "explicit port"),
        (HivemindConfig(startup_timeout=0), "startup_timeout"),
    ],
)
def test_invalid_network_settings_are_refused_before_starting_anything(config: HivemindConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_valid_settings_pass() -> None:
    HivemindConfig(
        initial_peers=(f"/ip4/127.0.0.1/tcp/9/p2p/{PEER}", f"/dns4/example.org/tcp/31337/p2p/{PEER}"),
        host_maddrs=("/ip4/0.0.0.0/tcp/0", "/ip6/::/tcp/0"),
        announce_maddrs=("/ip4/203.0.113.7/tcp/31337",),
    ).validate()


@pytest.mark.multiprocess
def test_unreachable_bootstrap_peer_is_a_startup_error_and_leaves_nothing_running() -> None:
    config = HivemindConfig(initial_peers=(f"/ip4/127.0.0.1/tcp/9/p2p/{PEER}",), startup_timeout=20)
    before = set(psutil.Process().children(recursive=True))
    with pytest.raises(StartupError, match="none of the initial peers answered"):
        asyncio.run(HivemindTransport.create(Identity.generate(), config))
    started = set(psutil.Process().children(recursive=True)) - before
    # torch's shared-memory helper serves this test process for its lifetime; it is not ours.
    started = {p for p in started if p.name() != "torch_shm_manager"}
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive
