"""Every record swarmnet itself stores passes the storage nodes' validator, so hardening refuses no honest peer.

Each component that writes to the DHT runs on the in-memory network, whose DHT is watched: every
store is also put to ``SwarmnetRecordValidator`` exactly as a hivemind node would see it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import torch
from hivemind.dht.routing import DHTID
from hivemind.dht.validation import DHTRecord
from hivemind.utils.serializer import MSGPackSerializer

from swarmnet.clock import run_virtual
from swarmnet.diloco import GlobalState, StateSync, StateSyncConfig
from swarmnet.diloco.progress import ProgressBoard
from swarmnet.identity import Identity
from swarmnet.keyspace import (
    FAMILIES,
    MEMBERSHIP_MAX_LIFETIME,
    REMOTE_MODULE_MAX_LIFETIME,
    TELEMETRY_MAX_LIFETIME,
    family_of,
)
from swarmnet.membership import MembershipConfig, PeerInfo, Swarm
from swarmnet.remote import HostedModule, ModuleServer, ServerConfig
from swarmnet.telemetry import TelemetryConfig, TelemetryPublisher, TelemetryReport
from swarmnet.testing import apoll_until
from swarmnet.transport.hivemind_validator import SwarmnetRecordValidator
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import average, make_peers, random_inputs


class Watched:
    """The network's stores, each with the validator's verdict (``None``: it would be stored)."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.verdicts: list[tuple[str, str | None]] = []
        validator = SwarmnetRecordValidator(clock=network.clock.time)
        store: Callable[..., bool] = network._dht.store

        def watched(key: str, value: bytes, expires_at: float, subkey: str | None, now: float) -> bool:
            record = DHTRecord(
                key=DHTID.generate(source=key).to_bytes(),
                subkey=MSGPackSerializer.dumps(subkey),
                value=MSGPackSerializer.dumps(value),
                expiration_time=expires_at,
            )
            self.verdicts.append((key, validator.refusal(record)))
            return store(key, value, expires_at, subkey, now)

        network._dht.store = watched  # type: ignore[method-assign]

    def families(self) -> set[str]:
        return {family.name for key, _ in self.verdicts if (family := family_of(key)) is not None}

    def refusals(self) -> list[tuple[str, str | None]]:
        return [(key, verdict) for key, verdict in self.verdicts if verdict is not None]


async def membership(network: MemoryNetwork) -> None:
    for config in (
        MembershipConfig(swarm="s", ttl=4.0, heartbeat_interval=1.0),
        MembershipConfig(swarm="s", ttl=MEMBERSHIP_MAX_LIFETIME, leave_linger=MEMBERSHIP_MAX_LIFETIME),
    ):
        identity = Identity.generate()
        swarm = Swarm(network.add_peer(identity.peer_id), identity, config)
        assert await swarm.join(PeerInfo(compute_gflops=1e12, bandwidth_mbps=1e9))
        await asyncio.sleep(2.5)
        await swarm.leave()


async def telemetry(network: MemoryNetwork) -> None:
    for config in (
        TelemetryConfig(swarm="s", period=1.0, ttl=4.0),
        TelemetryConfig(swarm="s", period=1.0, ttl=TELEMETRY_MAX_LIFETIME, leave_linger=TELEMETRY_MAX_LIFETIME),
    ):
        identity = Identity.generate()
        publisher = TelemetryPublisher(network.add_peer(identity.peer_id), identity, config, TelemetryReport)
        await publisher.start()
        await asyncio.sleep(2.5)
        await publisher.stop()


async def averaging(network: MemoryNetwork) -> None:
    peers = await make_peers(network, 2)
    stores_before = network.statistics().dht_stores
    outcomes = await average(peers, random_inputs(2, [(64,)]))
    assert all(outcome.succeeded for outcome in outcomes)

    async def grouped_stored() -> bool:  # each peer stores that it is looking, then (in the background) grouped
        return network.statistics().dht_stores - stores_before >= 4

    await apoll_until(grouped_stored, timeout=10, what="both peers' records saying they are grouped")


async def diloco(network: MemoryNetwork) -> None:
    identity = Identity.generate()
    transport = network.add_peer(identity.peer_id)
    board = ProgressBoard(transport, identity, "run", "schema")
    await board.reached(10)
    await board.leave()
    sync = StateSync(transport, identity, StateSyncConfig(run="run"), "schema")
    await sync.start()
    await sync.publish(GlobalState(torch.zeros(8), torch.zeros(8), step=10, rounds=1))
    await sync.withdraw()


async def remote_modules(network: MemoryNetwork) -> None:
    for config in (ServerConfig(), ServerConfig(record_ttl=REMOTE_MODULE_MAX_LIFETIME, announce_interval=1.0)):
        identity = Identity.generate()
        hosted = [HostedModule("run.L.3.0", torch.nn.Identity()), HostedModule("run.L.3.1", torch.nn.Identity())]
        server = ModuleServer(network.add_peer(identity.peer_id), identity, hosted, config)
        await server.start()
        await asyncio.sleep(2.5)
        await server.stop()  # the draining record, which must outlive the last online one


def test_every_record_the_project_stores_passes_the_storage_validator() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        watched = Watched(network)
        for scenario in (membership, telemetry, averaging, diloco, remote_modules):
            await scenario(network)
        assert watched.families() == {family.name for family in FAMILIES}
        assert watched.refusals() == []
        assert len(watched.verdicts) >= 20

    run_virtual(main())
