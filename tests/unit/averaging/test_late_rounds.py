"""Data that reaches a member before its round of the group started there waits for it (bounded).

On a busy machine a member's round can start seconds after the other members': its event loop runs
late, so it handles the commit late, or the leader hears the answer to its commit only after the
member's first chunk. The data waits for the round instead of dropping a healthy peer from it; data
for made-up groups gets refusals and never more than the lobby's bounds of waiting chunks.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import pytest
import torch

from swarmnet.averaging import Group
from swarmnet.averaging.lobby import LobbyLimits
from swarmnet.averaging.messages import DataHeader, Reply, decode_message, encode_message, method_name
from swarmnet.clock import run_virtual
from swarmnet.identity import Identity
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport
from tests.unit.averaging.harness import FAST, Peer, average, make_peers, mean_of, random_inputs

SHAPES = [(3000,), (40, 25)]
Handler = Callable[[str, bytes], Awaitable[bytes]]


async def delay_commits(peer: Peer, *, before: float = 0.0, after: float = 0.0) -> None:
    """``peer`` handles commits ``before`` seconds late (its loop lags), and answers ``after`` seconds late
    (the answer lags the round it starts at once)."""
    handle: Handler = peer.averager._matchmaker._on_commit

    async def handled(caller: str, request: bytes) -> bytes:
        await asyncio.sleep(before)
        reply = await handle(caller, request)
        await asyncio.sleep(after)
        return reply

    async def late(caller: str, request: bytes) -> bytes:
        # A real peer handles a request whose caller stopped waiting; the in-memory one would cancel it.
        return await asyncio.shield(handled(caller, request))

    await peer.transport.add_unary_handler(method_name(FAST.run, "commit"), late)


def delay_round_setup(peer: Peer, seconds: float) -> None:
    """``peer``'s step sets up its round ``seconds`` after its group formed (a step running late)."""
    matchmaker = peer.averager._matchmaker
    form_group = matchmaker.form_group

    async def late(round_id: int, schema: str, bandwidth_mbps: float) -> Group | None:
        group = await form_group(round_id, schema, bandwidth_mbps)
        await asyncio.sleep(seconds)
        return group

    matchmaker.form_group = late  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("late", "before", "after", "setup"),
    [
        ("answer", 0.0, 1.0, 0.0),  # the leader hears the commit's answer after the member's first chunk
        ("loop", 2.5, 0.0, 0.0),  # the member handles the commit after the leader's request timed out
        ("step", 0.0, 0.0, 1.0),  # the member's step sets its round up a second after the group formed
    ],
)
def test_a_member_whose_round_starts_late_still_contributes(
    late: str, before: float, after: float, setup: float
) -> None:
    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 2)
        for peer in peers:  # only the member's commit handler runs; we need not know which peer leads
            await delay_commits(peer, before=before, after=after)
            if setup:
                delay_round_setup(peer, setup)
        inputs = random_inputs(2, SHAPES, seed=3)
        expected = mean_of(inputs)
        outcomes = await average(peers, inputs)
        for outcome in outcomes:
            assert outcome.succeeded, (late, outcome)
            assert set(outcome.contributors) == {p.peer_id for p in peers}, (late, outcome)
        for tensors in inputs:
            for got, want in zip(tensors, expected, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)

    run_virtual(main())


async def send_chunk(sender: MemoryTransport, target: str, group_id: str, size: int = 64) -> Reply:
    header = DataHeader(group_id=group_id, kind="part", chunks=1)
    raw = await sender.call_unary(
        target, method_name(FAST.run, "data"), encode_message(header, b"x" * size), timeout=60
    )
    return decode_message(raw, Reply)[0]


def outsiders(network: MemoryNetwork, count: int) -> list[MemoryTransport]:
    return [network.add_peer(Identity.generate().peer_id) for _ in range(count)]


def test_chunks_for_made_up_groups_are_refused_and_what_waits_is_bounded() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        (victim,) = await make_peers(network, 1)
        lobby = victim.averager._lobby
        limits = lobby.limits
        assert limits == LobbyLimits.for_chunks(FAST.chunk_bytes)
        loop = asyncio.get_running_loop()
        started = loop.time()

        # One caller: at most ``per_caller`` chunks wait; the others are refused at once, saying why.
        (one,) = outsiders(network, 1)
        calls = [asyncio.ensure_future(send_chunk(one, victim.peer_id, secrets.token_hex(16))) for _ in range(20)]
        await asyncio.sleep(1.0)
        assert lobby.waiting == limits.per_caller
        early = [c.result() for c in calls if c.done()]
        assert len(early) == 20 - limits.per_caller
        assert all(not r.ok and "wait for groups here" in r.reason for r in early)

        # Bytes count too: a caller's big chunks stop waiting at ``per_caller_bytes``.
        (big,) = outsiders(network, 1)
        size = limits.per_caller_bytes // 3 + 1
        heavy = [asyncio.ensure_future(send_chunk(big, victim.peer_id, secrets.token_hex(16), size)) for _ in range(3)]
        await asyncio.sleep(1.0)
        assert sum(c.done() for c in heavy) == 1

        # Many callers: at most ``total`` chunks wait for groups nobody here knows of.
        crowd = outsiders(network, limits.total // limits.per_caller + 4)
        more = [asyncio.ensure_future(send_chunk(o, victim.peer_id, secrets.token_hex(16)))
                for o in crowd for _ in range(limits.per_caller)]  # fmt: skip
        await asyncio.sleep(1.0)
        assert lobby.waiting == limits.total
        early = [c.result() for c in more if c.done()]
        assert early
        assert all(not r.ok and "too many chunks" in r.reason for r in early)

        # Whatever waited is refused once the wait is over, and nothing is left behind.
        replies = await asyncio.gather(*calls, *more, *heavy)
        assert not any(r.ok for r in replies)
        assert any("never joined" in r.reason for r in replies)
        assert lobby.waiting == 0
        assert loop.time() - started <= FAST.matchmaking.timeout + 5.0

    run_virtual(main())


def test_a_crowd_of_outsiders_does_not_stop_early_data_of_a_real_group() -> None:
    """Data of a group we joined may wait even when outsiders fill the lobby's room for unknown groups."""

    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 2)
        for peer in peers:
            await delay_commits(peer, after=1.0)
        limits = peers[0].averager._lobby.limits
        crowd = outsiders(network, limits.total // limits.per_caller + 2)
        flood = [asyncio.ensure_future(send_chunk(o, p.peer_id, secrets.token_hex(16)))
                 for o in crowd for p in peers for _ in range(limits.per_caller)]  # fmt: skip
        await asyncio.sleep(0.5)
        assert all(p.averager._lobby.waiting == limits.total for p in peers)
        inputs = random_inputs(2, SHAPES, seed=4)
        outcomes = await average(peers, inputs)
        for outcome in outcomes:
            assert outcome.succeeded, outcome
            assert len(outcome.contributors) == 2, outcome
        await asyncio.gather(*flood)

    run_virtual(main())


def test_data_for_a_finished_group_is_refused_at_once() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 2)
        outcomes = await average(peers, random_inputs(2, SHAPES, seed=5))
        group_id = outcomes[0].group_id
        assert group_id is not None
        assert all(o.succeeded for o in outcomes)
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await send_chunk(peers[0].transport, peers[1].peer_id, group_id)
        assert not reply.ok
        assert "finished" in reply.reason
        assert loop.time() - started < 0.5

    run_virtual(main())
