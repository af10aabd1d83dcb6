"""The averaging engine on the in-memory transport, in virtual time: exactness, weights, codecs, outcome."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from swarmnet.averaging import AveragingConfig
from swarmnet.clock import run_virtual
from swarmnet.compression import decode, get_codec
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import FAST, average, make_peers, mean_of, random_inputs

SHAPES = [(1000,), (3, 7), (5000,)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_exact_average_uncompressed(dtype: torch.dtype) -> None:
    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4)
        inputs = [[t.to(dtype) for t in tensors] for tensors in random_inputs(4, SHAPES)]
        expected = [t.to(dtype) for t in mean_of(inputs)]
        outcomes = await average(peers, inputs)
        for outcome in outcomes:
            assert outcome.succeeded, outcome
            assert set(outcome.contributors) == set(outcome.members) == {p.peer_id for p in peers}
            assert not outcome.rejected
            assert not outcome.failed
            assert outcome.mode == "reduce"
        for tensors in inputs:
            for got, want in zip(tensors, expected, strict=True):
                assert got.dtype == dtype
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)

    run_virtual(main())


def test_weighted_average() -> None:
    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 3, replace(FAST, max_weight=12.0))
        inputs = random_inputs(3, SHAPES, seed=1)
        weights = [1.0, 3.0, 12.0]
        expected = mean_of(inputs, weights)
        for outcome in await average(peers, inputs, weights=weights):
            assert outcome.succeeded
        for tensors in inputs:
            for got, want in zip(tensors, expected, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    run_virtual(main())


def test_a_weight_above_max_weight_counts_as_max_weight() -> None:
    """Our own weight is clipped to the bound every other peer enforces (their check is in test_byzantine)."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 3, replace(FAST, max_weight=2.0))
        inputs = random_inputs(3, SHAPES, seed=2)
        expected = mean_of(inputs, [1.0, 2.0, 2.0])
        for outcome in await average(peers, inputs, weights=[1.0, 2.0, 50.0]):
            assert outcome.succeeded, outcome
            assert len(outcome.contributors) == 3, outcome
        for tensors in inputs:
            for got, want in zip(tensors, expected, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    run_virtual(main())


@pytest.mark.parametrize(
    ("codec", "tolerance"),
    [("fp16", 1e-3), ("bf16", 1e-2), ("int8", 0.02), ("int4", 0.3), ("sign1bit", 1.0), ("topk1pct", 1.0)],
)
def test_compressed_rounds_leave_every_peer_with_the_same_tensors(codec: str, tolerance: float) -> None:
    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4, replace(FAST, codec=codec))
        inputs = random_inputs(4, [(20_000,)], seed=2)
        expected = mean_of(inputs)[0]
        outcomes = await average(peers, inputs)
        assert all(o.succeeded and o.codec == codec for o in outcomes)
        for tensors in inputs[1:]:
            torch.testing.assert_close(tensors[0], inputs[0][0], rtol=0, atol=0)
        error = float((inputs[0][0] - expected).norm() / expected.norm())
        assert error < tolerance, error

    run_virtual(main())


def test_compression_cuts_the_bytes_sent() -> None:
    async def main() -> None:
        sent = {}
        for codec in ("none", "fp16", "int8", "sign1bit", "topk1pct"):
            peers = await make_peers(MemoryNetwork(), 4, replace(FAST, codec=codec))
            outcomes = await average(peers, random_inputs(4, [(100_000,)], seed=3))
            sent[codec] = max(o.total_bytes_sent for o in outcomes)
        raw = 2 * 3 / 4 * 400_000  # the butterfly bound for 4 peers, fp32
        assert raw <= sent["none"] < 1.02 * raw
        assert sent["fp16"] < 0.51 * raw
        assert sent["int8"] < 0.27 * raw
        assert sent["sign1bit"] < raw / 25
        assert sent["topk1pct"] < raw / 40

    run_virtual(main())


@pytest.mark.parametrize(("codec", "target"), [("sign1bit", 0.15), ("int4", 0.02)])
def test_error_feedback_converges_on_a_quadratic(codec: str, target: float) -> None:
    """Gradient descent on sum_i 0.5 * |x - c_i|^2 with compressed gradient averaging reaches mean(c).

    Error feedback at the sender and at the reducer is what makes it converge: without it the same
    run stalls several times farther away.
    """

    async def descend(feedback: str) -> float:
        config = replace(FAST, codec=codec, error_feedback=feedback)  # type: ignore[arg-type]
        peers = await make_peers(MemoryNetwork(), 4, config)
        gen = torch.Generator().manual_seed(4)
        centers = [torch.randn(2048, generator=gen) * (1 + i) for i in range(4)]
        optimum = torch.stack(centers).mean(0)
        x = torch.zeros(2048)
        for step in range(100):
            grads = [[x - c] for c in centers]
            outcomes = await average(peers, grads, round_id=step)
            assert all(o.succeeded for o in outcomes)
            x -= 0.05 * grads[0][0]
        return float((x - optimum).norm() / optimum.norm())

    async def main() -> None:
        with_feedback = await descend("on")
        without = await descend("off")
        assert with_feedback < target, with_feedback
        assert with_feedback < without / 3, (with_feedback, without)

    run_virtual(main())


def test_sparse_allgather_averages_exactly_what_was_sent() -> None:
    async def main() -> None:
        config = replace(FAST, codec="topk1pct_exact", sparse_mode="allgather", error_feedback="off")
        peers = await make_peers(MemoryNetwork(), 4, config)
        inputs = random_inputs(4, [(50_000,)], seed=5)
        codec = get_codec("topk1pct_exact")
        sent = [decode(codec.encode(t[0])).reshape(-1) for t in inputs]
        expected = torch.stack(sent).mean(0)
        outcomes = await average(peers, inputs)
        assert all(o.mode == "allgather" and o.succeeded for o in outcomes)
        for tensors in inputs:
            torch.testing.assert_close(tensors[0], expected, rtol=1e-6, atol=1e-7)

    run_virtual(main())


def test_sparse_mode_auto_picks_by_size() -> None:
    async def main() -> None:
        config = replace(FAST, codec="topk1pct")
        small = await average(await make_peers(MemoryNetwork(), 4, config), random_inputs(4, [(2000,)]))
        large = await average(await make_peers(MemoryNetwork(), 4, config), random_inputs(4, [(200_000,)]))
        assert {o.mode for o in small} == {"allgather"}
        assert {o.mode for o in large} == {"reduce"}

    run_virtual(main())


def test_outcome_and_statistics_account_for_the_round() -> None:
    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4)
        outcomes = await average(peers, random_inputs(4, [(40_000,)]))
        outcome = outcomes[0]
        others = set(outcome.members) - {peers[0].peer_id}
        assert set(outcome.bytes_sent) == others == set(outcome.bytes_received)
        assert all(n > 40_000 for n in outcome.bytes_sent.values())  # a quarter of the vector, each way
        assert {"matchmaking", "reduce_scatter", "tally", "all_gather"} <= set(outcome.phase_seconds)
        stats = peers[0].averager.statistics()
        assert (stats.rounds, stats.succeeded, stats.failed) == (1, 1, 0)
        assert stats.bytes_sent == outcome.total_bytes_sent
        assert stats.last == outcome

    run_virtual(main())


def test_a_paced_round_averages_exactly_at_the_paced_rate() -> None:
    # Links of 100 Mbit/s announced, sending capped at 8 Mbit/s (1 MB/s): the deadlines must follow the cap.
    config = replace(FAST, pace_mbps=8.0, chunk_bytes=1 << 16)

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4, config)
        inputs = random_inputs(4, [(400_000,)], seed=3)
        expected = mean_of(inputs)
        outcomes = await average(peers, inputs)
        for outcome, tensors in zip(outcomes, inputs, strict=True):
            assert outcome.succeeded, outcome
            assert not outcome.failed, outcome
            torch.testing.assert_close(tensors[0], expected[0], rtol=1e-6, atol=1e-6)
            data = sum(seconds for phase, seconds in outcome.phase_seconds.items() if phase != "matchmaking")
            unpaced = 2 * config.chunk_bytes + 4096  # the bucket starts full; tallies are not paced
            assert data >= (outcome.total_bytes_sent - unpaced) / 1e6

    run_virtual(main())


def test_bad_arguments_raise() -> None:
    async def main() -> None:
        (peer,) = await make_peers(MemoryNetwork(), 1)
        with pytest.raises(ValueError, match="floating"):
            await peer.averager.step([torch.arange(3)], round_id=0)
        with pytest.raises(ValueError, match="weight"):
            await peer.averager.step([torch.zeros(3)], round_id=0, weight=float("nan"))

    run_virtual(main())


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        AveragingConfig(codec="zip").validate()
    with pytest.raises(ValueError, match="pace_mbps"):
        AveragingConfig(pace_mbps=0.0).validate()
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="max_weight"):
            AveragingConfig(max_weight=bad).validate()
    for bad in (1.0, 0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="result_tolerance"):
            AveragingConfig(result_tolerance=bad).validate()
    for rounds in (-1, 1.5, True):
        with pytest.raises(ValueError, match="distrust_rounds"):
            replace(FAST.matchmaking, distrust_rounds=rounds).validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_group_size"):
        replace(FAST.matchmaking, min_group_size=5).validate()
    # A join record must not outlive what storage nodes keep for averaging keys.
    replace(FAST.matchmaking, timeout=595.0).validate()
    with pytest.raises(ValueError, match="timeout must be at most"):
        replace(FAST.matchmaking, timeout=596.0).validate()
