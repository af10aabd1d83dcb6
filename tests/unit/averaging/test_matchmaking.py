"""Group formation when the DHT misbehaves: a join record that never made it is stored again."""

from __future__ import annotations

import asyncio

import torch

from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import FAST, average, make_peers, with_group


def test_a_peer_whose_join_record_was_not_stored_announces_again_and_the_group_forms() -> None:
    async def scenario() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 3, with_group(FAST, 3, 3))
        # Not the leader (the lowest id), which would find the others itself and propose to them.
        flaky = max(peers, key=lambda p: p.peer_id).transport
        original = flaky.store
        stores: list[str] = []

        async def store_failing_once(key: str, value: bytes, expires_at: float, subkey: str | None = None) -> bool:
            stores.append(key)
            if len(stores) == 1:
                return False  # as a DHT store that timed out under load does
            return await original(key, value, expires_at, subkey=subkey)

        flaky.store = store_failing_once  # type: ignore[method-assign]
        tensors = [[torch.full((64,), float(i))] for i in range(3)]
        outcomes = await average(peers, tensors)
        # Without the second store nobody counts peer 0, and a group of 3 never forms (timeout 5 s).
        assert all(o.succeeded and len(o.contributors) == 3 for o in outcomes), [o.reason for o in outcomes]
        assert len(stores) >= 2
        assert all(o.phase_seconds["matchmaking"] < FAST.matchmaking.timeout / 2 for o in outcomes)
        for t in tensors:
            assert torch.equal(t[0], torch.full((64,), 1.0))

    asyncio.run(scenario())
