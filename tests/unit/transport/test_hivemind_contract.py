"""The transport contract over the real hivemind DHT and libp2p daemons, on loopback."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from swarmnet.identity import Identity
from swarmnet.transport.base import TransportLimits
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport
from tests.unit.transport.contract import Scenario, TransportContract

pytestmark = pytest.mark.multiprocess

# Small enough that the oversized-message case stays cheap; real peers use the default.
LIMITS = TransportLimits(max_message_bytes=1 << 20, default_timeout=10.0)
# The contract stores plain test values; a swarm's DHT nodes refuse all but signed records of its key
# families (tests/unit/transport/test_hivemind_validator.py, tests/integration/test_dht_hostile_hivemind.py).
CONFIG = HivemindConfig(limits=LIMITS, validate_records=False)


async def _pair_run(scenario: Scenario) -> None:
    a = await HivemindTransport.create(Identity.generate(), CONFIG)
    try:
        initial = tuple(await a.visible_addresses())
        b = await HivemindTransport.create(Identity.generate(), replace(CONFIG, initial_peers=initial))
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
