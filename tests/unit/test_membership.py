"""Membership on the in-memory transport, in virtual time."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from swarmnet.clock import run_virtual
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.keyspace import MEMBERSHIP_MAX_LIFETIME
from swarmnet.membership import MAX_CLAIMED_GFLOPS, MAX_CLAIMED_MBPS, MembershipConfig, PeerInfo, Swarm
from swarmnet.records import RecordPolicy, seal_body, sign_record
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport
from tests.support import apoll_until

CONFIG = MembershipConfig(swarm="test", ttl=10.0, heartbeat_interval=2.0, leave_linger=5.0)


def join_peer(network: MemoryNetwork, config: MembershipConfig = CONFIG) -> tuple[Identity, MemoryTransport, Swarm]:
    identity = Identity.generate()
    transport = network.add_peer(identity.peer_id)
    return identity, transport, Swarm(transport, identity, config)


async def listed(swarm: Swarm) -> set[str]:
    return {member.peer_id for member in await swarm.peers()}


async def observed_member() -> tuple[Swarm, Identity, MemoryTransport, Swarm]:
    """An observer and a member that joined, on one network: (observer, identity, transport, member)."""
    network = MemoryNetwork()
    _, _, observer = join_peer(network)
    identity, transport, swarm = join_peer(network)
    assert await swarm.join(PeerInfo())
    return observer, identity, transport, swarm


def test_joined_peers_are_listed_with_their_info() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        peers = [join_peer(network) for _ in range(3)]
        for i, (_, _, swarm) in enumerate(peers):
            assert await swarm.join(PeerInfo(roles=("trainer", f"n{i}"), bandwidth_mbps=100.0))
        members = await observer.peers()
        assert [m.peer_id for m in members] == sorted(identity.peer_id for identity, _, _ in peers)
        assert {m.info.roles for m in members} == {("trainer", "n0"), ("trainer", "n1"), ("trainer", "n2")}
        assert all(m.info.session and m.info.state == "online" for m in members)
        assert all(m.expires_at - m.last_seen == pytest.approx(CONFIG.ttl) for m in members)

    run_virtual(main())


def test_heartbeats_keep_a_peer_listed_far_beyond_its_ttl() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        identity, _, swarm = join_peer(network)
        await swarm.join(PeerInfo())
        for _ in range(10):
            await asyncio.sleep(CONFIG.ttl)
            assert identity.peer_id in await listed(observer)
        assert swarm.statistics().announcements >= 10 * CONFIG.ttl / CONFIG.heartbeat_interval

    run_virtual(main())


def test_clean_leave_is_visible_at_once_and_stays_gone() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        identity, _, swarm = join_peer(network)
        await swarm.join(PeerInfo())
        await asyncio.sleep(3 * CONFIG.heartbeat_interval)
        await swarm.leave()
        assert identity.peer_id not in await listed(observer)
        await swarm.leave()  # idempotent
        for _ in range(5):  # no heartbeat resurrects it, before or after the farewell expires
            await asyncio.sleep(CONFIG.heartbeat_interval)
            assert identity.peer_id not in await listed(observer)

    run_virtual(main())


def test_killed_peer_disappears_exactly_when_its_announcement_expires() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        identity, _, swarm = join_peer(network)
        await swarm.join(PeerInfo())
        await asyncio.sleep(CONFIG.heartbeat_interval * 1.5)
        (member,) = await observer.peers()
        network.kill(identity.peer_id)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()

        async def gone() -> bool:
            return identity.peer_id not in await listed(observer)

        await apoll_until(gone, timeout=2 * CONFIG.ttl, what="the killed peer to expire")
        gone_after = loop.time() - killed_at
        assert 0 < gone_after <= CONFIG.ttl + 0.1
        assert network.clock.time() >= member.expires_at - 0.1

    run_virtual(main())


def test_forged_and_misplaced_records_are_ignored_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        network = MemoryNetwork()  # the in-memory DHT has no storage validator: readers must defend
        _, _, observer = join_peer(network)
        victim, _, victim_swarm = join_peer(network)
        await victim_swarm.join(PeerInfo(roles=("honest",)))
        attacker, attacker_transport, _ = join_peer(network)
        key, now = CONFIG.key, network.clock.time()

        # A record the attacker signs for the victim's slot, with a far later expiry so the DHT keeps it.
        forged = sign_record(
            attacker, PeerInfo(roles=("evil",)), key=key, subkey=victim.peer_id, timestamp=now, expires_at=now + 60
        )
        assert await attacker_transport.store(key, forged, now + 60, subkey=victim.peer_id)
        # A body claiming to be the victim, signed by the attacker's key, in the attacker's own slot.
        body = {"protocol_version": 1, "kind": "peer_info", "peer_id": victim.peer_id, "key": key,
                "subkey": attacker.peer_id, "timestamp": now, "expires_at": now + 60, "payload": {}}  # fmt: skip
        impersonation = seal_body(attacker, body)
        assert await attacker_transport.store(key, impersonation, now + 60, subkey=attacker.peer_id)
        # Plain junk in a third slot.
        assert await attacker_transport.store(key, b"\x00garbage", now + 60, subkey="junk")

        with caplog.at_level(logging.DEBUG, logger="swarmnet"):
            assert await listed(observer) == set()  # the victim's slot now holds only the forgery
        rejected = observer.statistics().rejected_records
        assert rejected == {"impersonation": 1, "malformed": 1}
        assert "signed by" in caplog.text

    run_virtual(main())


def test_record_in_someone_elses_slot_is_ignored_even_if_genuine() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        author, author_transport, _ = join_peer(network)
        now = network.clock.time()
        slot = Identity.generate().peer_id
        genuine = sign_record(author, PeerInfo(), key=CONFIG.key, subkey=slot, timestamp=now, expires_at=now + 9)
        assert await author_transport.store(CONFIG.key, genuine, now + 9, subkey=slot)
        assert await observer.peers() == []

    run_virtual(main())


def test_swarms_with_different_names_do_not_see_each_other() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        other = MembershipConfig(swarm="other", ttl=10.0, heartbeat_interval=2.0)
        _, _, observer = join_peer(network)
        mine_id, _, mine = join_peer(network)
        theirs_id, _, theirs = join_peer(network, other)
        await mine.join(PeerInfo())
        await theirs.join(PeerInfo())
        _, _, other_observer = join_peer(network, other)
        assert [m.peer_id for m in await observer.peers()] == [mine_id.peer_id]
        assert [m.peer_id for m in await other_observer.peers()] == [theirs_id.peer_id]

    run_virtual(main())


def test_lost_announcements_are_retried_quickly() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        identity, _, swarm = join_peer(network)
        await swarm.join(PeerInfo())
        network.set_faults(FaultPlan(seed=3, drop_rate=1.0))
        await asyncio.sleep(CONFIG.heartbeat_interval * 2.5)
        failures = swarm.statistics().failed_announcements
        assert failures >= 2
        network.set_faults(FaultPlan())
        await asyncio.sleep(CONFIG.retry_interval * 1.5)
        assert swarm.statistics().failed_announcements == failures
        assert identity.peer_id in await listed(observer)

    run_virtual(main())


def test_include_self_flag() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity, _, swarm = join_peer(network)
        await swarm.join(PeerInfo())
        assert await listed(swarm) == {identity.peer_id}
        assert await swarm.peers(include_self=False) == []

    run_virtual(main())


@pytest.mark.parametrize(
    "config",
    [
        MembershipConfig(swarm=""),
        MembershipConfig(swarm="a/b"),
        MembershipConfig(ttl=10.0, heartbeat_interval=6.0),
        MembershipConfig(heartbeat_interval=0.0),
        MembershipConfig(retry_interval=0.0),
        MembershipConfig(records=RecordPolicy(max_bytes=10)),
        MembershipConfig(swarm="s" * 129),
        MembershipConfig(ttl=MEMBERSHIP_MAX_LIFETIME + 1.0),
        MembershipConfig(leave_linger=MEMBERSHIP_MAX_LIFETIME + 1.0),
        MembershipConfig(leave_linger=0.0),
    ],
)
def test_invalid_configs_are_refused(config: MembershipConfig) -> None:
    with pytest.raises(ConfigError):
        config.validate()


def test_swarm_refuses_a_transport_of_another_identity() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        with pytest.raises(ConfigError, match="not the identity"):
            Swarm(network.add_peer(), Identity.generate(), CONFIG)

    run_virtual(main())


# --- hostile members: lifetimes, claims, sizes ---------------------------------------------------


def _store_own(network: MemoryNetwork, info: PeerInfo, *, timestamp: float, expires_at: float) -> str:
    """A self-signed member with no process behind it, stored once in its own slot; returns its id."""
    identity, transport, _ = join_peer(network)
    record = sign_record(
        identity, info, key=CONFIG.key, subkey=identity.peer_id, timestamp=timestamp, expires_at=expires_at
    )
    stored = transport.store(CONFIG.key, record, expires_at, subkey=identity.peer_id)
    asyncio.get_running_loop().create_task(stored)
    return identity.peer_id


def test_a_member_living_longer_than_the_protocol_allows_is_not_listed() -> None:
    async def main() -> None:
        network = MemoryNetwork()  # no storage validator here: the reader alone must refuse it
        _, _, observer = join_peer(network)
        now = network.clock.time()
        day = _store_own(network, PeerInfo(), timestamp=now, expires_at=now + 24 * 3600.0)
        longest = _store_own(network, PeerInfo(), timestamp=now, expires_at=now + MEMBERSHIP_MAX_LIFETIME)
        await asyncio.sleep(0)
        assert await listed(observer) == {longest}
        assert day not in await listed(observer)
        assert observer.statistics().rejected_records == {"lifetime": 2}

    run_virtual(main())


def test_a_reader_lists_a_member_at_most_twice_its_ttl_after_its_newest_record() -> None:
    """Within the protocol's bound a record may still outlive this swarm's ttl: our reader caps it."""

    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        now = network.clock.time()
        stale = _store_own(network, PeerInfo(), timestamp=now - 2.5 * CONFIG.ttl, expires_at=now + 60.0)
        fresh = _store_own(network, PeerInfo(), timestamp=now, expires_at=now + MEMBERSHIP_MAX_LIFETIME)
        await asyncio.sleep(0)
        members = await observer.peers()
        assert [m.peer_id for m in members] == [fresh]
        assert members[0].expires_at == now + 2 * CONFIG.ttl
        await asyncio.sleep(2 * CONFIG.ttl + 0.1)
        assert stale not in await listed(observer)
        assert await listed(observer) == set()  # its signed expiry is still 100 s away

    run_virtual(main())


def test_capacity_claims_are_clamped_to_plausible_bounds() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        now = network.clock.time()
        body = {"protocol_version": 1, "kind": "peer_info", "key": CONFIG.key, "timestamp": now,
                "expires_at": now + 5.0, "payload": {"compute_gflops": 1e9, "bandwidth_mbps": 1e6}}  # fmt: skip
        braggart, transport, _ = join_peer(network)
        raw = seal_body(braggart, {**body, "peer_id": braggart.peer_id, "subkey": braggart.peer_id})
        assert await transport.store(CONFIG.key, raw, now + 5.0, subkey=braggart.peer_id)
        [member] = await observer.peers()
        assert (member.info.compute_gflops, member.info.bandwidth_mbps) == (MAX_CLAIMED_GFLOPS, MAX_CLAIMED_MBPS)
        modest = PeerInfo(compute_gflops=51234.5, bandwidth_mbps=940.0)
        assert (modest.compute_gflops, modest.bandwidth_mbps) == (51234.5, 940.0)

    run_virtual(main())


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_a_member_with_a_non_finite_number_is_not_listed(literal: bytes) -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        identity, transport, _ = join_peer(network)
        now = network.clock.time()
        genuine = sign_record(identity, PeerInfo(started_at=12345.5), key=CONFIG.key, subkey=identity.peer_id,
                              timestamp=now, expires_at=now + 5.0)  # fmt: skip
        body = genuine[100:].replace(b"12345.5", literal)
        crafted = genuine[:4] + identity.public_key + identity.sign(b"swarmnet-record\x00" + body) + body
        assert await transport.store(CONFIG.key, crafted, now + 5.0, subkey=identity.peer_id)
        assert await observer.peers() == []
        assert observer.statistics().rejected_records == {"malformed": 1}

    run_virtual(main())


def test_an_announcement_too_large_for_the_key_is_refused_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        network = MemoryNetwork()
        _, _, observer = join_peer(network)
        _, _, swarm = join_peer(network)
        crowded = PeerInfo(addresses=tuple(f"/dns4/{'a' * 230}.example/tcp/{port}" for port in range(32)))
        with caplog.at_level(logging.ERROR, logger="swarmnet.membership"):
            assert not await swarm.join(crowded)
        assert "exceeds" in caplog.text
        assert await observer.peers() == []
        assert await swarm.update(addresses=("/ip4/127.0.0.1/tcp/1",))
        assert len(await observer.peers()) == 1
        await swarm.leave()

    run_virtual(main())


def test_the_farewell_of_a_peer_with_the_longest_ttl_is_stored() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        longest = MembershipConfig(swarm="test", ttl=MEMBERSHIP_MAX_LIFETIME, heartbeat_interval=50.0,
                                   leave_linger=MEMBERSHIP_MAX_LIFETIME)  # fmt: skip
        _, _, observer = join_peer(network, longest)
        identity, _, swarm = join_peer(network, longest)
        assert await swarm.join(PeerInfo())
        assert await listed(observer) == {identity.peer_id}
        await asyncio.sleep(1.0)  # the farewell must expire after the announcement, within the bound
        await swarm.leave()
        assert swarm.statistics().failed_announcements == 0
        assert await listed(observer) == set()
        assert observer.statistics().rejected_records == {}

    run_virtual(main())


def test_the_farewell_outlives_an_announcement_reported_as_lost() -> None:
    """A store can land on some replicas and still be reported as failed (hivemind reports the last replica's
    answer): the farewell must expire after it, or those replicas refuse the farewell and keep listing us."""

    async def main() -> None:
        observer, identity, transport, swarm = await observed_member()
        real_store = transport.store

        async def landed_but_reported_lost(*args: Any, **kwargs: Any) -> bool:
            await real_store(*args, **kwargs)
            return False

        transport.store = landed_but_reported_lost  # type: ignore[method-assign]
        await asyncio.sleep(1.5 * CONFIG.heartbeat_interval)
        transport.store = real_store  # type: ignore[method-assign]
        assert swarm.statistics().failed_announcements >= 1
        await swarm.leave()
        assert identity.peer_id not in await listed(observer)

    run_virtual(main())


def test_the_farewell_outlives_a_heartbeat_that_leave_cancelled_mid_store() -> None:
    """leave() cancels a heartbeat whose store already reached the DHT (the reply was still on its way): the
    farewell must expire after that heartbeat, or the nodes that stored it refuse the farewell."""

    async def main() -> None:
        observer, identity, transport, swarm = await observed_member()
        real_store = transport.store
        landed = asyncio.Event()

        async def landed_reply_pending(*args: Any, **kwargs: Any) -> bool:
            ok = await real_store(*args, **kwargs)
            landed.set()
            await asyncio.sleep(3600.0)  # the answer never comes before leave() cancels the heartbeat
            return ok

        transport.store = landed_reply_pending  # type: ignore[method-assign]
        await asyncio.wait_for(landed.wait(), timeout=2 * CONFIG.heartbeat_interval)
        transport.store = real_store  # type: ignore[method-assign]
        await swarm.leave()
        assert identity.peer_id not in await listed(observer)

    run_virtual(main())
