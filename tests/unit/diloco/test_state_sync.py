"""State announcements, consensus and verified transfer; liars and malformed requests."""

from __future__ import annotations

import asyncio
import json

import pytest

from swarmnet.clock import run_virtual
from swarmnet.diloco import GlobalState, StateSync, StateSyncConfig, StateSyncError
from swarmnet.errors import ProtocolError, RemoteFault
from swarmnet.identity import Identity
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.diloco.harness import NUMEL, state, syncs


def test_majority_digest_of_the_newest_round_wins_and_transfers_verified() -> None:
    async def main() -> None:
        a, b, c, joiner = await syncs(MemoryNetwork(), 4)
        await a.publish(state(1, rounds=2))  # an older round never wins
        await b.publish(state(2))
        await c.publish(state(2))
        consensus = await joiner.consensus()
        assert consensus is not None
        assert consensus.announcement.rounds == 3
        assert len(consensus.holders) == 2
        assert len(consensus.announcement.parts) == 3
        fetched = await joiner.fetch(consensus, NUMEL)
        assert fetched.digest() == state(2).digest()
        assert b.bytes_served + c.bytes_served == len(state(2).to_bytes())
        assert b.bytes_served
        assert c.bytes_served

    run_virtual(main())


def test_a_holder_serving_bad_parts_is_skipped() -> None:
    async def main() -> None:
        liar, honest, joiner = await syncs(MemoryNetwork(), 3)
        await liar.publish(state(2))
        await honest.publish(state(2))
        liar._served = {d: b"\x00" * len(blob) for d, blob in liar._served.items()}  # now lies about the bytes
        consensus = await joiner.consensus()
        assert consensus is not None
        fetched = await joiner.fetch(consensus, NUMEL)
        assert fetched.digest() == state(2).digest()

    run_virtual(main())


def test_fetch_fails_cleanly_when_every_holder_lies() -> None:
    async def main() -> None:
        liar, joiner = await syncs(MemoryNetwork(), 2)
        await liar.publish(state(2))
        liar._served = {d: b"\x01" * len(blob) for d, blob in liar._served.items()}
        consensus = await joiner.consensus()
        assert consensus is not None
        with pytest.raises(StateSyncError, match="no holder served a valid part"):
            await joiner.fetch(consensus, NUMEL)

    run_virtual(main())


def test_other_schemas_and_forged_slots_are_ignored() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        (other,) = await syncs(network, 1, schema="other-model")
        a, joiner = await syncs(network, 2)
        await other.publish(state(5, rounds=9))
        assert await joiner.consensus() is None
        await a.publish(state(2))
        # Copy a's genuine record into another peer's slot: readers must not count it twice.
        stored = await joiner._transport.get(a.config.key)
        value = stored[a._identity.peer_id].value
        await joiner._transport.store(a.config.key, value, stored[a._identity.peer_id].expires_at, subkey="forged")
        consensus = await joiner.consensus()
        assert consensus is not None
        assert consensus.holders == (a._identity.peer_id,)

    run_virtual(main())


def test_malformed_part_requests_get_a_clear_error() -> None:
    async def main() -> None:
        server, client = await syncs(MemoryNetwork(), 2)
        announcement = await server.publish(state(2))
        peer, method = server._identity.peer_id, "r.diloco-state"
        for request, reason in [
            (b"not json", "malformed"),
            (json.dumps({"digest": "00" * 32, "part": 0}).encode(), "not served"),
            (json.dumps({"digest": announcement.digest, "part": 99}).encode(), "out of range"),
        ]:
            with pytest.raises(RemoteFault, match=reason):
                await client._transport.call_unary(peer, method, request)

    run_virtual(main())


def test_blob_header_and_size_are_checked() -> None:
    blob = state(1).to_bytes()
    assert GlobalState.from_bytes(blob, NUMEL).digest() == state(1).digest()
    with pytest.raises(ProtocolError, match="bytes"):
        GlobalState.from_bytes(blob[:-4], NUMEL)
    with pytest.raises(ProtocolError, match="header"):
        GlobalState.from_bytes(b"XXXX" + blob[4:], NUMEL)


def test_a_refreshed_announcement_outlives_its_ttl_and_a_withdrawn_one_is_not_revived() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        announcers = []
        for _ in range(2):
            identity = Identity.generate()
            config = StateSyncConfig(run="r", ttl=3.0, part_size=1 << 20)
            announcers.append(StateSync(network.add_peer(identity.peer_id), identity, config, "s"))
        (reader,) = await syncs(network, 1)
        refreshed, idle = announcers
        await refreshed.publish(state(1))
        await idle.publish(state(2))
        for _ in range(20):  # 10 s: over three lifetimes
            await asyncio.sleep(0.5)
            await refreshed.refresh()
        found = await reader.announcements()
        assert [a.digest for a in found.values()] == [state(1).digest()]
        await refreshed.withdraw()
        for _ in range(12):
            await asyncio.sleep(0.5)
            await refreshed.refresh()
        assert await reader.announcements() == {}

    run_virtual(main())
