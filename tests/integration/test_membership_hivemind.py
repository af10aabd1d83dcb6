"""Membership over the real DHT: two peers in one process, each with its own DHT process and p2p daemon."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.identity import Identity
from swarmnet.membership import MembershipConfig, PeerInfo, Swarm
from swarmnet.records import sign_record
from swarmnet.transport.hivemind_transport import HivemindTransport
from tests.support import with_dht_pair

pytestmark = pytest.mark.multiprocess

CONFIG = MembershipConfig(swarm="real", ttl=8.0, heartbeat_interval=1.0)


async def _check(alice: HivemindTransport, alice_id: Identity, bob: HivemindTransport, bob_id: Identity) -> None:
    assert alice.peer_id == alice_id.peer_id  # the libp2p id is the swarmnet id
    alice_swarm, bob_swarm = Swarm(alice, alice_id, CONFIG), Swarm(bob, bob_id, CONFIG)
    assert await alice_swarm.join(PeerInfo(roles=("a",)))
    assert await bob_swarm.join(PeerInfo(roles=("b",)))
    members = {m.peer_id: m.info.roles for m in await alice_swarm.peers()}
    assert members == {alice_id.peer_id: ("a",), bob_id.peer_id: ("b",)}

    # Storage nodes refuse a record that bob signs for alice's slot, however late its expiry.
    now = bob.clock.time()
    forged = sign_record(bob_id, PeerInfo(roles=("evil",)), key=CONFIG.key, subkey=alice_id.peer_id,
                         timestamp=now, expires_at=now + 3600)  # fmt: skip
    assert not await bob.store(CONFIG.key, forged, now + 3600, subkey=alice_id.peer_id)
    assert not await bob.store(CONFIG.key, b"junk", now + 3600, subkey=alice_id.peer_id)
    await asyncio.sleep(CONFIG.heartbeat_interval * 1.5)
    assert {m.peer_id: m.info.roles for m in await bob_swarm.peers()}[alice_id.peer_id] == ("a",)

    await alice_swarm.leave()
    assert alice_id.peer_id not in {m.peer_id for m in await bob_swarm.peers()}
    assert [m.peer_id for m in await alice_swarm.peers()] == [bob_id.peer_id]


def test_join_list_refuse_forgery_and_leave_over_the_real_dht() -> None:
    asyncio.run(with_dht_pair(_check))
