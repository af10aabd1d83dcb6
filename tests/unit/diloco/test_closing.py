"""A run's last sync leaves every trainer on one state, even when its last round failed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from swarmnet.averaging import Outcome
from swarmnet.averaging.messages import DataHeader
from swarmnet.clock import run_virtual
from swarmnet.diloco.closing import converging, settled
from swarmnet.diloco.state_sync import StateAnnouncement
from swarmnet.errors import TransportClosed
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import intercept
from tests.unit.diloco.harness import digest, diloco, launch, make_node


def announcement(rounds: int, digest_char: str) -> StateAnnouncement:
    return StateAnnouncement(layout="s", rounds=rounds, step=10 * rounds, digest=digest_char * 64, size=64,
                             part_size=64, parts=["0" * 64])  # fmt: skip


def outcome(members: tuple[str, ...], contributors: tuple[str, ...], succeeded: bool = True) -> Outcome:
    return Outcome(run="r", round_id=1, succeeded=succeeded, members=members, contributors=contributors)


def test_settled_waits_for_peers_of_our_round_on_other_states_and_for_unsure_peers_finishing_it() -> None:
    mine = announcement(4, "a")
    assert settled({"me": mine, "b": announcement(4, "a")}, me="me", fragments=1, sure=frozenset())
    assert not settled({"me": mine, "b": announcement(4, "b")}, me="me", fragments=1, sure=frozenset())
    # One round behind: still finishing the round; sure to land on our state only if it contributed to all of it.
    behind = {"me": mine, "b": announcement(3, "b")}
    assert not settled(behind, me="me", fragments=1, sure=frozenset())
    assert settled(behind, me="me", fragments=1, sure=frozenset({"me", "b"}))
    # Far behind, or ahead: not waited for.
    assert settled({"me": mine, "b": announcement(1, "b"), "c": announcement(7, "c")}, me="me", fragments=1,
                   sure=frozenset())  # fmt: skip


def test_only_a_round_every_member_contributed_to_makes_its_members_sure() -> None:
    assert converging([outcome(("a", "b"), ("a", "b"))]) == {"a", "b"}
    assert converging([outcome(("a", "b"), ("a",))]) == frozenset()
    assert converging([outcome(("a", "b"), (), succeeded=False)]) == frozenset()
    assert converging([]) == frozenset()


def test_trainers_whose_last_round_failed_settle_on_one_state_before_they_stop() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        nodes = [await make_node(network, i, diloco(), max_steps=15) for i in range(2)]
        for node in nodes:
            replica = node.trainer.replica

            def cut(header: DataHeader, payload: memoryview, replica: object = replica) -> None:
                if replica.rounds == 2:  # type: ignore[attr-defined]
                    raise TransportClosed("the last round's data is lost")

            transport = node.trainer._transport
            intercept(SimpleNamespace(transport=transport, peer_id=transport.peer_id), cut)  # type: ignore[arg-type]
        for node in nodes:
            launch(node)
        await asyncio.gather(*(n.task for n in nodes if n.task))
        last = [n.trainer.outcomes[-1] for n in nodes]
        assert all(len(o.contributors) < 2 for o in last), last  # each applied its own update
        assert [n.trainer.replica.rounds for n in nodes] == [3, 3]
        assert len({digest(n) for n in nodes}) == 1
        assert sorted(n.trainer.fetches for n in nodes) == [0, 1]  # one took the other's state (the pair rule)

    run_virtual(main())
