"""The transport contract over the real hivemind DHT and libp2p daemons, on loopback."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.identity import Identity
from swarmnet.transport.base import TransportLimits
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport
from tests.unit.transport.contract import Scenario, TransportContract

pytestmark = pytest.mark.multiprocess

# Small enough that the oversized-message case stays cheap; real peers use the default.
LIMITS = TransportLimits(max_message_bytes=1 << 20, default_timeout=10.0)


async def _pair_run(scenario: Scenario) -> None:
    a = await HivemindTransport.create(Identity.generate(), HivemindConfig(limits=LIMITS))
    try:
        initial = tuple(await a.visible_addresses())
        b = await HivemindTransport.create(Identity.generate(), HivemindConfig(initial_peers=initial, limits=LIMITS))
        try:
            await scenario(a, b)
        finally:
            await b.shutdown()
    finally:
        await a.shutdown()


class TestHivemindContract(TransportContract):
    """Every contract scenario with two real peers (two DHT processes, two p2p daemons)."""

    __test__ = True

    def run(self, scenario: Scenario) -> None:
        asyncio.run(_pair_run(scenario))
