"""One attacker identity announcing round 10^6 and an all-zero state cannot take over a DiLoCo run."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.clock import run_virtual
from swarmnet.diloco.consensus import Consensus
from swarmnet.diloco.state_sync import StateAnnouncement, StateSyncError
from swarmnet.transport.memory import MemoryNetwork
from tests.support import apoll_until
from tests.unit.diloco.forger import ROUNDS, STEP, Forger, zero_blob
from tests.unit.diloco.harness import NUMEL, digest, diloco, launch, make_node, state, syncs


def test_three_holders_outvote_one_peer_announcing_round_a_million() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        *holders, joiner = await syncs(network, 4)
        for holder in holders:
            await holder.publish(state(2))
        forger = Forger(network, "r", "s", NUMEL)
        await forger.start()
        try:
            consensus = await joiner.consensus()
            assert consensus is not None
            assert consensus.announcement.digest == state(2).digest()
            fetched = await joiner.fetch(consensus, NUMEL)
            assert fetched.digest() == state(2).digest()
            assert forger.requests == 0
        finally:
            await forger.stop()

    run_virtual(main())


def test_trainers_and_a_joiner_ignore_a_peer_announcing_round_a_million() -> None:
    """Three trainers and a joiner; the attacker's progress and state records claim step 10^7, round 10^6."""

    async def main() -> None:
        network = MemoryNetwork()
        config = diloco()
        nodes = [launch(await make_node(network, i, config, max_steps=20)) for i in range(3)]
        numel = nodes[0].trainer.replica.global_params.numel()
        forger = Forger(network, "t", "tiny", numel)
        await forger.start()
        try:

            async def moved_on() -> bool:
                return nodes[0].trainer.replica.rounds >= 2

            await apoll_until(moved_on, timeout=60, interval=0.05, what="two rounds")
            joiner = await make_node(network, 3, config, max_steps=20, seed=99)
            assert joiner.trainer.replica.rounds < ROUNDS
            assert joiner.trainer.fetches == 1
            launch(joiner)
            await asyncio.gather(*(n.task for n in [*nodes, joiner] if n.task))
        finally:
            await forger.stop()
        assert forger.requests == 0, "someone fetched the attacker's state"
        assert len({digest(n) for n in [*nodes, joiner]}) == 1
        for node in nodes:
            trainer = node.trainer
            assert (trainer.replica.step, trainer.replica.rounds) == (20, 4)
            assert trainer._steps_done == 20, "the attacker's sync point cut inner steps short"

    run_virtual(main())


def test_a_peer_always_at_the_next_sync_point_does_not_cut_inner_steps_short() -> None:
    """A believable claim (the honest trainers' next sync point, re-announced all the time) from one peer."""

    async def main() -> None:
        network = MemoryNetwork()
        config = diloco()
        nodes = [launch(await make_node(network, i, config, max_steps=20)) for i in range(3)]
        forger = Forger(network, "t", "tiny", nodes[0].trainer.replica.global_params.numel(), rounds=0, step=0)
        forger.progress = lambda: (nodes[0].trainer.replica.step // config.inner_steps + 1) * config.inner_steps
        forger.interval = 0.1
        await forger.start()
        try:
            await asyncio.gather(*(n.task for n in nodes if n.task))
        finally:
            await forger.stop()
        assert [n.trainer._steps_done for n in nodes] == [20, 20, 20]
        assert len({digest(n) for n in nodes}) == 1

    run_virtual(main())


def _consensus_of(forger: Forger) -> Consensus:
    announcement = StateAnnouncement(
        layout=forger.schema, rounds=forger.rounds, step=forger.step, digest=forger.digest, size=len(forger.blob),
        part_size=forger.part_size, parts=forger.parts,
    )  # fmt: skip
    return Consensus(announcement, (forger.peer_id,), 1)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (zero_blob(NUMEL, rounds=ROUNDS, step=STEP), "claims step 10000000, round 1000000"),
        (b"XXXX" + zero_blob(NUMEL)[4:], "malformed"),
        (zero_blob(NUMEL // 2), "does not fit"),
    ],
)
def test_a_state_whose_blob_contradicts_its_announcement_is_refused(blob: bytes, reason: str) -> None:
    """The blob's digest matches, but its header claims another round, is garbage, or the size is wrong."""

    async def main() -> None:
        network = MemoryNetwork()
        (joiner,) = await syncs(network, 1)
        forger = Forger(network, "r", "s", NUMEL, rounds=3, step=30, blob=blob)
        await forger.start()
        try:
            with pytest.raises(StateSyncError, match=reason):
                await joiner.fetch(_consensus_of(forger), NUMEL)
        finally:
            await forger.stop()
        if reason == "does not fit":
            assert forger.requests == 0, "a state of the wrong size was downloaded before being refused"

    run_virtual(main())


def test_a_lone_trainer_is_not_dragged_to_round_a_million() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        node = await make_node(network, 0, diloco(), max_steps=10)
        forger = Forger(network, "t", "tiny", node.trainer.replica.global_params.numel())
        await forger.start()
        task = launch(node).task
        assert task is not None
        try:
            await task
        finally:
            await forger.stop()
        assert (node.trainer.replica.step, node.trainer.replica.rounds, node.trainer._steps_done) == (10, 2, 10)
        assert forger.requests == 0

    run_virtual(main())


def test_a_joiner_waits_while_single_peers_disagree_then_starts_on_its_own() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        numel = (await make_node(MemoryNetwork(), 0, diloco(), max_steps=5)).trainer.replica.global_params.numel()
        forgers = [Forger(network, "t", "tiny", numel, rounds=r, step=5 * r) for r in (1, 2)]
        for forger in forgers:
            await forger.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            node = await make_node(network, 0, diloco(), max_steps=5)
            assert loop.time() - started > node.trainer.config.join_wait - 0.01
        finally:
            for forger in forgers:
                await forger.stop()
        assert (node.trainer.fetches, node.trainer.replica.rounds) == (0, 0)
        assert sum(f.requests for f in forgers) == 0

    run_virtual(main())
