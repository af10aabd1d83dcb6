"""SwarmTrainer on the in-memory transport (virtual time): identical state, joins, failures, streaming."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import pytest

from swarmnet.clock import run_virtual
from swarmnet.diloco import TrainerConfig
from swarmnet.errors import ConfigError
from swarmnet.keyspace import DILOCO_PROGRESS_MAX_LIFETIME, DILOCO_STATE_MAX_LIFETIME
from swarmnet.transport.memory import MemoryNetwork
from tests.support import apoll_until
from tests.unit.averaging.harness import kill_when
from tests.unit.diloco.harness import DATA, digest, diloco, launch, make_node


def test_trainers_end_with_identical_global_state_and_learn() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        nodes = [launch(await make_node(network, i, diloco(), max_steps=30)) for i in range(3)]
        before = nodes[0].trainer.replica.evaluate(DATA.validation_batches())
        await asyncio.gather(*(n.task for n in nodes if n.task))
        assert len({digest(n) for n in nodes}) == 1
        for node in nodes:
            replica = node.trainer.replica
            assert replica.step == 30
            assert replica.rounds == 6
            assert all(o.succeeded and len(o.contributors) == 3 for o in node.trainer.outcomes)
            # a contribution weighs at most one sync interval of inner steps, and full intervals weigh that much
            assert [a.config.max_weight for a in node.trainer.averagers] == [5.0]
            assert all(not o.rejected for o in node.trainer.outcomes)
        after = nodes[0].trainer.replica.evaluate(DATA.validation_batches())
        assert after < before - 0.5, (before, after)
        stats = nodes[0].trainer.statistics()
        assert (stats.step, stats.rounds, stats.raw_bytes) == (30, 6, nodes[0].trainer.raw_bytes)
        assert stats.bytes_sent == sum(o.total_bytes_sent for o in nodes[0].trainer.outcomes) > 0
        assert stats.last == nodes[0].trainer.outcomes[-1]
        assert [a.error_feedback for a in stats.averagers] == [None]  # codec "none" keeps no residuals

    run_virtual(main())


def test_joiner_fetches_the_swarm_state_and_syncs_with_it() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        first = [launch(await make_node(network, i, diloco(), max_steps=40)) for i in range(2)]

        async def moved_on() -> bool:  # let the swarm move on before the joiner arrives
            return first[0].trainer.replica.rounds >= 2

        await apoll_until(moved_on, timeout=60, interval=0.05, what="two rounds")
        joiner = await make_node(network, 2, diloco(), max_steps=40, seed=99)  # other initial weights
        assert joiner.trainer.fetches == 1
        assert joiner.trainer.replica.rounds >= 2
        launch(joiner)
        await asyncio.gather(*(n.task for n in [*first, joiner] if n.task))
        assert len({digest(n) for n in [*first, joiner]}) == 1
        assert any(len(o.contributors) == 3 for o in joiner.trainer.outcomes)

    run_virtual(main())


def test_a_trainer_killed_mid_round_does_not_stop_the_others() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        nodes = [launch(await make_node(network, i, diloco(), max_steps=30)) for i in range(3)]
        victim = nodes[2]
        shim = SimpleNamespace(peer_id=victim.trainer._transport.peer_id, transport=victim.trainer._transport)
        # Dies as it sends its first part in the third round: the data phase, after the group formed.
        kill_when(network, shim, lambda header: victim.trainer.replica.rounds == 2)  # type: ignore[arg-type]
        survivors = nodes[:2]
        await asyncio.gather(*(n.task for n in survivors if n.task))
        victim.stop.set()
        await asyncio.gather(*(n.task for n in [victim] if n.task), return_exceptions=True)
        assert len({digest(n) for n in survivors}) == 1
        outcomes = survivors[0].trainer.outcomes
        assert survivors[0].trainer.replica.rounds == 6
        assert [len(o.contributors) for o in outcomes] == [3, 3, 2, 2, 2, 2]
        assert victim.trainer._transport.peer_id in outcomes[2].failed

    run_virtual(main())


def test_streaming_fragments_keep_identical_global_state() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        config = diloco(inner_steps=6, fragments=3, overlap_steps=1, mixing=0.5, codec="int4")
        nodes = [launch(await make_node(network, i, config, max_steps=36)) for i in range(3)]
        await asyncio.gather(*(n.task for n in nodes if n.task))
        assert len({digest(n) for n in nodes}) == 1
        trainer = nodes[0].trainer
        assert trainer.replica.rounds == 18  # 3 fragments x 6 syncs each
        sizes = {o.bytes_sent.get(trainer._transport.peer_id, -1) for o in trainer.outcomes}
        assert trainer.outcomes
        assert all(o.succeeded and o.codec == "int4" for o in trainer.outcomes), sizes

    run_virtual(main())


def test_record_ttls_stay_within_what_storage_nodes_keep() -> None:
    """A ttl whose records storage nodes would refuse is a config error, not silently failing stores."""
    base = TrainerConfig(run="r", schema="s")
    longest = replace(base, state_ttl=DILOCO_STATE_MAX_LIFETIME - 1, progress_ttl=DILOCO_PROGRESS_MAX_LIFETIME - 1)
    longest.validate()
    with pytest.raises(ConfigError, match="state_ttl"):
        replace(base, state_ttl=DILOCO_STATE_MAX_LIFETIME).validate()
    with pytest.raises(ConfigError, match="progress_ttl"):
        replace(base, progress_ttl=DILOCO_PROGRESS_MAX_LIFETIME).validate()
