"""SwarmTrainer on the in-memory transport (virtual time): identical state, joins, failures, streaming."""

from __future__ import annotations

import asyncio

from swarmnet.clock import run_virtual
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.diloco.harness import DATA, diloco, digest, launch, make_node


def test_trainers_end_with_identical_global_state_and_learn() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        nodes = [launch(await make_node(network, i, diloco(), max_steps=30)) for i in range(3)]
        before = nodes[0].trainer.replica.evaluate(DATA.validation_batches())
        await asyncio.gather(*(n.task for n in nodes if n.task))
        assert len({digest(n) for n in nodes}) == 1
        for node in nodes:
            replica = node.trainer.replica
            assert replica.step == 30 and replica.rounds == 6
            assert all(o.succeeded and len(o.contributors) == 3 for o in node.trainer.outcomes)
        after = nodes[0].trainer.replica.evaluate(DATA.validation_batches())
        assert after < before - 0.5, (before, after)

    run_virtual(main())
