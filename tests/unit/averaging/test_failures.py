"""Peers that die, arrive late, send garbage or lie: the rest still finish with a clear outcome."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import replace

import pytest
import torch

from swarmnet.averaging import AggregationConfig
from swarmnet.averaging.group import partition
from swarmnet.averaging.messages import DataHeader, decode_message, encode_message, method_name
from swarmnet.clock import run_virtual
from swarmnet.compression import get_codec
from swarmnet.errors import RemotePeerError
from swarmnet.testing import apoll_until
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import (
    FAST,
    Peer,
    average,
    intercept,
    kill_when,
    make_peers,
    mean_of,
    random_inputs,
)

SHAPES = [(3000,), (40, 25)]


def assert_exact_average_of(inputs: list[list[torch.Tensor]], originals: list[list[torch.Tensor]]) -> None:
    expected = mean_of(originals)
    for tensors in inputs:
        for got, want in zip(tensors, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("phase", "condition"),
    [
        ("reduce_scatter", lambda h: h.kind == "part"),
        ("tally", lambda h: h.kind == "tally"),
    ],
)
def test_a_peer_dying_mid_round_leaves_the_exact_average_of_the_others(
    phase: str, condition: Callable[[DataHeader], bool]
) -> None:
    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 4)
        inputs = random_inputs(4, SHAPES, seed=10)
        originals = [[t.clone() for t in tensors] for tensors in inputs]
        victim = peers[2]
        kill_when(network, victim, condition)
        outcomes = await average(peers, inputs)
        survivors = [o for p, o in zip(peers, outcomes, strict=True) if p is not victim]
        for outcome in survivors:
            assert outcome.succeeded, outcome
            assert victim.peer_id not in outcome.contributors
            assert len(outcome.contributors) == 3
            assert outcome.recovered_elements > 0  # the victim's part was re-reduced by the survivors
            assert outcome.unaveraged_elements == 0
            assert outcome.consistent
        assert any(victim.peer_id in o.failed for o in survivors)
        assert_exact_average_of([inputs[i] for i in (0, 1, 3)], [originals[i] for i in (0, 1, 3)])

    run_virtual(main())


def test_a_reducer_dying_as_it_sends_its_results_is_dropped_and_its_range_recovered() -> None:
    """Results stream before the tally, so a reducer that dies while sending them never reports:
    it is no contributor, the survivors reduce its range again, and all hold the exact average of three."""

    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 4)
        inputs = random_inputs(4, SHAPES, seed=11)
        originals = [[t.clone() for t in tensors] for tensors in inputs]
        victim = peers[1]
        kill_when(network, victim, lambda h: h.kind == "result")
        outcomes = await average(peers, inputs)
        alive = [i for i, p in enumerate(peers) if p is not victim]
        for i in alive:
            assert outcomes[i].succeeded
            assert outcomes[i].consistent
            assert victim.peer_id not in outcomes[i].contributors
            assert len(outcomes[i].contributors) == 3
            assert outcomes[i].recovered_elements > 0
            assert outcomes[i].unaveraged_elements == 0
        assert_exact_average_of([inputs[i] for i in alive], [originals[i] for i in alive])

    run_virtual(main())


def test_a_peer_dying_during_matchmaking_is_left_out() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 4)
        inputs = random_inputs(4, SHAPES, seed=12)
        originals = [[t.clone() for t in tensors] for tensors in inputs]
        announced = _on_first_store(peers[0])
        doomed = asyncio.ensure_future(peers[0].averager.step(inputs[0], round_id=0))
        await asyncio.wait_for(announced.wait(), FAST.matchmaking.timeout)  # its join record is in the DHT
        network.kill(peers[0].peer_id)
        outcomes = await average(peers[1:], inputs[1:])
        doomed.cancel()
        for outcome in outcomes:
            assert outcome.succeeded
            assert len(outcome.members) == 3
        assert_exact_average_of(inputs[1:], originals[1:])

    run_virtual(main())


def test_late_peers_wait_for_the_next_round() -> None:
    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 5)
        inputs = random_inputs(5, SHAPES, seed=13)
        sending: set[str] = set()
        for peer in peers[:4]:
            _note_data_sent(peer, sending)
        first = asyncio.gather(*(p.averager.step(t, round_id=0) for p, t in zip(peers[:4], inputs[:4], strict=True)))

        async def grouped() -> bool:  # a peer sends its data only to the members of its group
            return len(sending) == 4

        await apoll_until(grouped, timeout=FAST.matchmaking.timeout, what="the four averaging in one group")
        late = await peers[4].averager.step(inputs[4], round_id=0)
        firsts = await first
        assert all(o.succeeded and len(o.members) == 4 for o in firsts), firsts
        assert not late.succeeded
        assert late.group_id is None
        assert "no group" in late.reason
        assert late.seconds == pytest.approx(FAST.matchmaking.timeout, abs=0.5)
        outcomes = await average(peers[1:], inputs[1:], round_id=1)  # the late peer joins the next round
        assert all(o.succeeded for o in outcomes)
        assert all(peers[4].peer_id in o.contributors for o in outcomes)

    run_virtual(main())


def _on_first_store(peer: Peer) -> asyncio.Event:
    """An event set once ``peer``'s first DHT store (its join record) has completed."""
    stored = asyncio.Event()
    original = peer.transport.store

    async def store(key: str, value: bytes, expires_at: float, subkey: str | None = None) -> bool:
        result = await original(key, value, expires_at, subkey=subkey)
        stored.set()
        return result

    peer.transport.store = store  # type: ignore[method-assign]
    return stored


def _note_data_sent(peer: Peer, senders: set[str]) -> None:
    """Add ``peer`` to ``senders`` when it sends its first data message (it leaves the message as it is)."""

    def note(header: DataHeader, payload: memoryview) -> None:
        senders.add(peer.peer_id)

    intercept(peer, note)


def _nan_payload(header: DataHeader, payload: memoryview) -> bytes:
    numel = int(get_codec("none").decode(payload).numel())
    return get_codec("none").encode(torch.full((numel,), float("nan")))


BAD_PAYLOADS: dict[str, Callable[[DataHeader, memoryview], bytes]] = {
    "garbage": lambda h, p: b"\x00" * 64,
    "truncated": lambda h, p: bytes(p[: len(p) // 2]),
    "flipped_bit": lambda h, p: bytes(p[:-1]) + bytes([p[-1] ^ 1]),
    "wrong_size": lambda h, p: get_codec("none").encode(torch.zeros(7)),
    "nan": _nan_payload,
    "inf_fp16": lambda h, p: get_codec("fp16").encode(torch.zeros(3))[:-2] + struct.pack("<e", float("inf")),
    "empty": lambda h, p: b"",
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_bad_payloads_are_rejected_and_the_sender_named(case: str) -> None:
    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4)
        inputs = random_inputs(4, SHAPES, seed=14)
        originals = [[t.clone() for t in tensors] for tensors in inputs]
        liar = peers[3]
        tamper = BAD_PAYLOADS[case]
        intercept(liar, lambda h, p: tamper(h, p) if h.kind == "part" else None)
        outcomes = await average(peers, inputs)
        for outcome in outcomes[:3]:
            assert outcome.succeeded
            assert liar.peer_id not in outcome.contributors
            assert len(outcome.contributors) == 3
        named = [o.rejected[liar.peer_id] for o in outcomes[:3] if liar.peer_id in o.rejected]
        assert named, "no reducer named the liar"
        assert_exact_average_of(inputs[:3], originals[:3])

    run_virtual(main())


def test_strangers_and_malformed_messages_get_clear_errors() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 2)
        stranger = network.add_peer()
        header = DataHeader(group_id="ab" * 16, kind="part")
        reply = await stranger.call_unary(peers[0].peer_id, method_name("t", "data"), encode_message(header, b"x"))
        assert b"no such group" in reply
        with pytest.raises(RemotePeerError, match="ProtocolError"):
            await stranger.call_unary(peers[0].peer_id, method_name("t", "data"), b"SWA1\xff\xff\xff\xff")
        with pytest.raises(RemotePeerError, match="ProtocolError"):
            await stranger.call_unary(peers[0].peer_id, method_name("t", "data"), b"nonsense")

    run_virtual(main())


@pytest.mark.parametrize("rule", ["trimmed_mean", "centered_clip", "median"])
@pytest.mark.parametrize("attack", ["scaled", "sign_flipped"])
def test_one_byzantine_peer_of_five(rule: str, attack: str) -> None:
    async def main() -> None:
        config = replace(FAST, aggregation=AggregationConfig(rule=rule))  # type: ignore[arg-type]
        config = replace(config, matchmaking=replace(config.matchmaking, target_group_size=5))
        peers = await make_peers(MemoryNetwork(), 5, config)
        gen = torch.Generator().manual_seed(15)
        signal = torch.randn(20_000, generator=gen)
        honest = [[signal + 0.1 * torch.randn(20_000, generator=gen)] for _ in range(4)]
        target = mean_of(honest)[0]
        bad = honest[0][0] * (100.0 if attack == "scaled" else -10.0)
        inputs = [[t[0].clone()] for t in honest] + [[bad]]
        outcomes = await average(peers, inputs)
        assert all(o.succeeded and len(o.contributors) == 5 for o in outcomes)
        error = float((inputs[0][0] - target).norm() / target.norm())
        assert error < 0.10, error

    run_virtual(main())


def test_plain_mean_is_not_robust() -> None:
    """The control for the test above: the same attack ruins the mean."""

    async def main() -> None:
        config = replace(FAST, matchmaking=replace(FAST.matchmaking, target_group_size=5))
        peers = await make_peers(MemoryNetwork(), 5, config)
        gen = torch.Generator().manual_seed(15)
        honest = [[torch.randn(20_000, generator=gen)] for _ in range(4)]
        target = mean_of(honest)[0]
        inputs = [[t[0].clone()] for t in honest] + [[honest[0][0] * 100.0]]
        await average(peers, inputs)
        assert float((inputs[0][0] - target).norm() / target.norm()) > 1.0

    run_virtual(main())


def test_a_sender_refused_midway_through_its_part_leaves_the_exact_average_of_the_others() -> None:
    """Reducers pipeline chunk by chunk: chunk 0 is reduced with the liar's valid first chunk, then its
    NaN second chunk gets it refused. Every streamed chunk 0 is over the wrong contributors, so each
    reducer amends it from the parts it holds (no recovery pass, nobody resends a part), and the
    honest peers end with the exact average of the three of them."""

    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 4, replace(FAST, chunk_bytes=4096))
        inputs = random_inputs(4, [(6000,), (20, 100)], seed=13)
        originals = [[t.clone() for t in tensors] for tensors in inputs]
        liar = peers[2]
        codec = get_codec("none")

        def poison(header: DataHeader, payload: memoryview) -> bytes | None:
            if header.kind != "part" or header.chunk != 1:
                return None
            values = codec.decode(payload).clone()
            values[0] = float("nan")
            return codec.encode(values)

        intercept(liar, poison)
        outcomes = await average(peers, inputs)
        honest = [i for i, p in enumerate(peers) if p is not liar]
        for i in honest:
            assert outcomes[i].succeeded, outcomes[i]
            assert outcomes[i].consistent, outcomes[i]
            assert set(outcomes[i].contributors) == {peers[j].peer_id for j in honest}
            assert liar.peer_id in outcomes[i].rejected
            assert outcomes[i].recovered_elements == 0
            # Amended: chunk 0 (4096 bytes, 1024 elements) of every other honest reducer's range, and all
            # of the liar's (it reduced its own range over itself).
            ranges = dict(zip(outcomes[i].members, partition(8000, [1.0] * 4), strict=True))
            sizes = {peer: hi - lo for peer, (lo, hi) in ranges.items()}
            others = [p.peer_id for j, p in enumerate(peers) if j != i and p is not liar]
            assert outcomes[i].amended_elements == sum(min(1024, sizes[p]) for p in others) + sizes[liar.peer_id]
            assert outcomes[i].unaveraged_elements == 0
        assert_exact_average_of([inputs[i] for i in honest], [originals[i] for i in honest])

    run_virtual(main())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("count", ["fewer", "one", "more"])
def test_a_part_declaring_the_wrong_chunk_count_is_rejected(count: str) -> None:
    """A part whose header claims another number of chunks than the reducer's range has: refused at once
    and named (before this was checked, a shorter part left the reducer waiting forever for a chunk
    that could never come, and a longer one held it until the deadline)."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4, replace(FAST, chunk_bytes=4096))
        inputs = random_inputs(4, [(6000,), (20, 100)], seed=16)
        originals = [[t.clone() for t in tensors] for tensors in inputs]
        liar = peers[1]
        changes: dict[str, Callable[[int], int]] = {"fewer": lambda n: n - 1, "one": lambda n: 1,
                                                    "more": lambda n: n + 1}  # fmt: skip
        change = changes[count]

        def miscount(header: DataHeader, payload: memoryview) -> tuple[DataHeader, bytes] | None:
            if header.kind != "part":
                return None
            return header.model_copy(update={"chunks": change(header.chunks)}), bytes(payload)

        intercept(liar, miscount)
        outcomes = await average(peers, inputs)
        honest = [i for i, p in enumerate(peers) if p is not liar]
        for i in honest:
            assert outcomes[i].succeeded, outcomes[i]
            assert set(outcomes[i].contributors) == {peers[j].peer_id for j in honest}
            assert outcomes[i].seconds < 2 * FAST.deadlines.minimum + FAST.matchmaking.min_wait + 1.0
        reasons = [outcomes[i].rejected.get(liar.peer_id, "") for i in honest]
        assert any("chunks" in reason for reason in reasons), reasons
        assert_exact_average_of([inputs[i] for i in honest], [originals[i] for i in honest])

    run_virtual(main())


def test_a_straggler_cut_off_midway_is_amended_out() -> None:
    """A peer whose stream slows to a crawl after its first part chunk is cut off as a straggler. Chunk 0
    of every other range was already reduced (and streamed) over it, so each honest reducer amends that
    chunk from the parts it holds, with no part sent twice. Only the straggler's own range, whose
    results crawl with its parts, is reduced again by the others: all three end with their exact average."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4, replace(FAST, chunk_bytes=4096))
        inputs = random_inputs(4, [(6000,), (20, 100)], seed=17)
        originals = [[t.clone() for t in tensors] for tensors in inputs]
        slow = peers[3]
        original = slow.transport.call_stream

        async def crawling(requests: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
            async for request in requests:
                header, _ = decode_message(request, DataHeader)
                if header.kind == "part" and header.chunk > 0:
                    await asyncio.sleep(60.0)  # virtual seconds: far past any straggler cutoff
                yield request

        def call_stream(
            target: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None
        ) -> AsyncGenerator[bytes, None]:
            return original(target, method, crawling(requests), timeout=timeout)

        slow.transport.call_stream = call_stream  # type: ignore[method-assign,assignment]
        outcomes = await average(peers, inputs)
        honest = [0, 1, 2]
        for i in honest:
            outcome = outcomes[i]
            assert outcome.succeeded, outcome
            assert set(outcome.contributors) == {peers[j].peer_id for j in honest}
            ranges = dict(zip(outcome.members, partition(8000, [1.0] * 4), strict=True))
            sizes = {peer: hi - lo for peer, (lo, hi) in ranges.items()}
            others = [peers[j].peer_id for j in honest if j != i]
            assert outcome.amended_elements == sum(min(1024, sizes[p]) for p in others), outcome
            assert outcome.recovered_elements == sizes[slow.peer_id], outcome
            assert outcome.unaveraged_elements == 0, outcome
            assert outcome.consistent, outcome
        assert_exact_average_of([inputs[i] for i in honest], [originals[i] for i in honest])

    run_virtual(main())
