"""Group formation: a join record that never made it is stored again; a stable group re-forms without the DHT;
in a swarm of several groups, groups mix from round to round."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import replace

import pytest
import torch

from swarmnet.averaging import Outcome
from swarmnet.averaging.runs import round_order
from swarmnet.clock import run_virtual
from swarmnet.testing import apoll_until
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import FAST, Peer, average, make_peers, mean_of, random_inputs, with_group


def test_a_peer_whose_join_record_was_not_stored_announces_again_and_the_group_forms() -> None:
    async def scenario() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 3, with_group(FAST, 3, 3))
        # Not the leader (the first in the round's order), which would find the others itself and propose to them.
        last = round_order([p.peer_id for p in peers], "t/0")[-1]
        flaky = next(p for p in peers if p.peer_id == last).transport
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


def _count_stores(peer: Peer) -> Counter[str]:
    """Count the DHT stores ``peer`` makes, per key."""
    stores: Counter[str] = Counter()
    original = peer.transport.store

    async def counting(key: str, value: bytes, expires_at: float, subkey: str | None = None) -> bool:
        stores[key] += 1
        return await original(key, value, expires_at, subkey=subkey)

    peer.transport.store = counting  # type: ignore[method-assign]
    return stores


async def _until_round_stores(stores: list[Counter[str]], round_id: int, expected: int) -> None:
    """Wait until every peer has made ``expected`` DHT stores for ``round_id`` of run ``t``; fail on more."""

    def counts() -> list[int]:
        return [sum(n for key, n in peer.items() if f"/avg/t/{round_id}/" in key) for peer in stores]

    async def reached() -> bool:
        return all(n >= expected for n in counts())

    await apoll_until(reached, timeout=FAST.matchmaking.timeout, what=f"{expected} stores per peer, round {round_id}")
    assert counts() == [expected] * len(stores)


async def _step_later(peer: Peer, tensors: list[torch.Tensor], round_id: int, delay: float) -> Outcome:
    await asyncio.sleep(delay)
    return await peer.averager.step(tensors, round_id=round_id)


@pytest.mark.parametrize(("window", "late"), [(0.25, None), (0.25, "members"), (0.25, "leader"), (0.0, None)])
def test_a_full_group_meets_again_without_the_dht(window: float, late: str | None) -> None:
    """With the shortcut no peer stores a record for round 1, also when the leader or its members start 0.1 s
    after the others. Without it (window 0) each stores two: that it is looking, then that it is grouped."""

    async def main() -> None:
        config = with_group(FAST, 4, 2)
        config = replace(config, matchmaking=replace(config.matchmaking, regroup_window=window))
        peers = await make_peers(MemoryNetwork(), 4, config)
        first = await average(peers, random_inputs(4, [(64,)], seed=1))
        stores = [_count_stores(p) for p in peers]
        inputs = random_inputs(4, [(64,)], seed=2)
        expected = mean_of(inputs)
        leads = [p.peer_id == first[0].members[0] for p in peers]
        delays = [0.1 if late == ("leader" if lead else "members") else 0.0 for lead in leads]
        steps = [_step_later(p, t, 1, d) for p, t, d in zip(peers, inputs, delays, strict=True)]
        outcomes = await asyncio.gather(*steps)
        assert all(o.succeeded and set(o.contributors) == set(first[0].members) for o in outcomes)
        # The grouped records go out in the background after the round; the looking ones (which the
        # shortcut skips) before it, so with the shortcut a count of 0 is already final here.
        await _until_round_stores(stores, 1, 0 if window else 2)
        for tensors in inputs:
            assert torch.allclose(tensors[0], expected[0], atol=1e-6)

    run_virtual(main())


def test_a_peer_joining_a_stable_group_is_in_a_group_the_round_after() -> None:
    """Round 2 the leader re-forms its group of 4 and may leave the newcomer out; reading round 2's records
    it sees its run changed, so in round 3 the DHT cuts the 5 into runs of 3 and 2."""

    async def main() -> None:
        config = with_group(FAST, 4, 2)
        config = replace(config, matchmaking=replace(config.matchmaking, timeout=2.0))
        network = MemoryNetwork()
        peers = await make_peers(network, 4, config)
        for round_id in (0, 1):
            assert all(o.succeeded for o in await average(peers, random_inputs(4, [(64,)]), round_id))
        peers += await make_peers(network, 1, config)
        await average(peers, random_inputs(5, [(64,)]), 2)  # the newcomer may be left out
        outcomes = await average(peers, random_inputs(5, [(64,)], seed=3), 3)
        assert all(o.succeeded for o in outcomes), [o.reason for o in outcomes]
        assert sorted(len(o.members) for o in outcomes) == [2, 2, 3, 3, 3]

    run_virtual(main())


@pytest.mark.parametrize("victim", ["leader", "member"])
def test_a_dead_peer_ends_the_shortcut_and_the_others_average(victim: str) -> None:
    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 4, with_group(FAST, 4, 2))
        members = (await average(peers, random_inputs(4, [(64,)])))[0].members
        dead = next(p for p in peers if p.peer_id == members[0 if victim == "leader" else -1])
        network.kill(dead.peer_id)
        alive = [p for p in peers if p is not dead]
        for round_id in (1, 2):  # round 2: nobody waits for the dead peer any more
            inputs = random_inputs(3, [(64,)], seed=4 + round_id)
            expected = mean_of(inputs)
            outcomes = await average(alive, inputs, round_id)
            assert all(o.succeeded and len(o.contributors) == 3 for o in outcomes), [o.reason for o in outcomes]
            for tensors in inputs:
                assert torch.allclose(tensors[0], expected[0], atol=1e-6)

    run_virtual(main())


def test_groups_of_a_larger_swarm_mix_from_round_to_round() -> None:
    """Eight peers in groups of four: over the rounds every pair of peers averages together (a fixed order would
    keep the same two groups forever), and no round takes the shortcut (it would freeze them). Peer ids are
    random, so the rounds needed vary: a given pair misses 40 rounds with probability (4/7)**40 < 2e-10."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 8, with_group(FAST, 4, 2))
        stores = [_count_stores(p) for p in peers]
        together: set[frozenset[str]] = set()
        round_id = 0
        while len(together) < 8 * 7 // 2 and round_id < 40:
            inputs = random_inputs(8, [(64,)], seed=round_id)
            outcomes = await average(peers, inputs, round_id)
            assert all(o.succeeded for o in outcomes), [o.reason for o in outcomes]
            groups = {frozenset(o.members) for o in outcomes}
            assert sorted(len(g) for g in groups) == [4, 4]
            for group in groups:
                together |= {frozenset(pair) for pair in itertools.combinations(group, 2)}
                members = [tensors for p, tensors in zip(peers, inputs, strict=True) if p.peer_id in group]
                for tensors in members:  # each group ends with its own members' mean
                    assert torch.allclose(tensors[0], members[0][0])
            round_id += 1
        assert len(together) == 8 * 7 // 2, f"after {round_id} rounds"
        await _until_round_stores(stores, round_id - 1, 2)  # looking, then grouped (in the background)

    run_virtual(main())
