"""Progress records: the stop-early majority, and records that stay live until their trainer leaves."""

from __future__ import annotations

import asyncio

from swarmnet.clock import run_virtual
from swarmnet.diloco.progress import ProgressBoard, swarm_reached
from swarmnet.identity import Identity
from swarmnet.transport.memory import MemoryNetwork


def test_most_other_trainers_must_be_at_the_sync_point_before_we_stop_early() -> None:
    def anything(peer: str, step: int) -> bool:
        return True

    def below_million(peer: str, step: int) -> bool:
        return step < 10**6

    assert not swarm_reached({}, 10, anything)
    assert swarm_reached({"a": 10}, 10, anything)
    assert not swarm_reached({"a": 5, "b": 5, "z": 10**7}, 10, anything)
    assert not swarm_reached({"a": 10, "z": 10**7}, 10, below_million)
    assert swarm_reached({"a": 10, "b": 15, "z": 5}, 10, anything)


def test_a_refreshed_record_outlives_its_ttl_and_a_departed_one_is_not_revived() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        boards = []
        for _ in range(3):
            identity = Identity.generate()
            boards.append(ProgressBoard(network.add_peer(identity.peer_id), identity, "r", "s", ttl=3.0))
        trainer, idle, reader = boards
        await trainer.reached(10)
        await idle.reached(10)
        for _ in range(20):  # 10 s: over three lifetimes
            await asyncio.sleep(0.5)
            await trainer.refresh()
        assert set((await reader.positions() or {}).values()) == {10}
        assert len(await reader.positions() or {}) == 1, "the record that was not refreshed should have expired"
        await trainer.leave()
        for _ in range(12):
            await asyncio.sleep(0.5)
            await trainer.refresh()
        assert await reader.positions() == {}

    run_virtual(main())
