"""Byzantine peers that lie about what they may not be trusted with: their weight, their bandwidth, and, as
reducers, their part of the result. Each attack is made on the wire, as an outsider's client would."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from swarmnet.averaging import AggregationConfig, AveragingConfig, Outcome, allreduce
from swarmnet.averaging.group import partition
from swarmnet.averaging.messages import DataHeader
from swarmnet.clock import run_virtual
from swarmnet.compression import get_codec
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import (
    FAST,
    Peer,
    average,
    intercept,
    kill_when,
    make_peers,
    mean_of,
    with_group,
)

NUMEL = 20_000
ROBUST = ["median", "centered_clip", "trimmed_mean"]


def honest_inputs(count: int, seed: int) -> list[list[torch.Tensor]]:
    """Updates that agree up to 10% noise, as replicas' updates of one model do."""
    gen = torch.Generator().manual_seed(seed)
    signal = torch.randn(NUMEL, generator=gen)
    return [[signal + 0.1 * torch.randn(NUMEL, generator=gen)] for _ in range(count)]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def forge_weight(liar: Peer, weight: list[float], kinds: tuple[str, ...] = ("part", "gather")) -> None:
    """``liar`` claims ``weight[0]`` in the header of every contribution it sends (while ``weight`` is set)."""

    def tamper(header: DataHeader, payload: memoryview) -> tuple[DataHeader, bytes] | None:
        if header.kind not in kinds or not weight:
            return None
        return header.model_copy(update={"weight": weight[0]}), bytes(payload)

    intercept(liar, tamper)


def config_of(rule: str, group: int, **changes: object) -> AveragingConfig:
    config = with_group(FAST, group, 2, **changes)
    return replace(config, aggregation=AggregationConfig(rule=rule))  # type: ignore[arg-type]


# --- weights -----------------------------------------------------------------------------------


ATTACKS: dict[str, Callable[[list[torch.Tensor]], torch.Tensor]] = {
    "sign_flipped_x10": lambda honest: honest[0] * -10.0,
    # Just inside the honest values, so that trimming keeps it: the trimmed mean's weak spot for a weight.
    "at_the_honest_edge": lambda honest: torch.stack(honest).max(dim=0).values * 0.99,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("rule", ROBUST)
def test_one_peer_of_five_claiming_weight_1e6_does_not_steer_a_robust_rule(rule: str, attack: str) -> None:
    """The bound admits the weight (max_weight 1e6): the robust rule itself must not count it. The honest
    peers end where they end when the attacker claims weight 1, which for the sign-flipped update scaled
    by 10 is within 0.1 (relative) of their mean."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 5, config_of(rule, 5, max_weight=1e6))
        honest = honest_inputs(4, seed=1)
        target = mean_of(honest)[0]
        bad = ATTACKS[attack]([t[0] for t in honest])
        claimed = [1e6]
        forge_weight(peers[4], claimed)
        results = []
        for round_id in range(2):  # claiming 1e6, then 1
            inputs = [[t[0].clone()] for t in honest] + [[bad.clone()]]
            outcomes = await average(peers, inputs, round_id=round_id)
            assert all(o.succeeded and len(o.contributors) == 5 for o in outcomes), outcomes
            results.append([inputs[i][0] for i in range(4)])
            claimed.clear()
        errors = [relative_error(got, target) for got in results[0]]
        for steered, fair in zip(*results, strict=True):
            torch.testing.assert_close(steered, fair, rtol=1e-6, atol=1e-6, msg=lambda m: f"{errors}: {m}")
        if attack == "sign_flipped_x10":
            assert max(errors) < 0.1, errors

    run_virtual(main())


@pytest.mark.parametrize(("codec", "kind"), [("none", "part"), ("topk1pct", "gather")])
def test_a_contribution_weighing_more_than_max_weight_is_refused_and_its_sender_named(codec: str, kind: str) -> None:
    """Under the mean, a weight of 1e6 (the bound is the default, 1) made the attacker's update the result;
    refused, the others average without it (uncompressed: the exact average of the four of them)."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 5, config_of("mean", 5, codec=codec))
        inputs = honest_inputs(5, seed=2)
        originals = [[t[0].clone()] for t in inputs]
        liar = peers[4]
        forge_weight(liar, [1e6], (kind,))
        outcomes = await average(peers, inputs)
        for outcome in outcomes[:4]:
            assert outcome.mode == ("reduce" if kind == "part" else "allgather"), outcome
            assert outcome.succeeded, outcome
            assert set(outcome.contributors) == {p.peer_id for p in peers[:4]}, outcome
        reasons = [o.rejected.get(liar.peer_id, "") for o in outcomes[:4]]
        assert all("max_weight" in reason for reason in reasons), reasons
        if codec == "none":
            for i in range(4):
                torch.testing.assert_close(inputs[i][0], mean_of(originals[:4])[0], rtol=1e-6, atol=1e-6)

    run_virtual(main())


# --- bandwidth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bandwidths", "largest_share"),
    [
        ([100.0, 100.0, 100.0, 1e6], 2 / 5),  # capped at twice the median: 200 of 500
        ([100.0, 1e6], 2 / 3),
        ([0.0, 0.0, 100.0, 1e6], 2 / 3),  # peers announcing nothing reduce nothing and set no cap
        ([100.0, 100.0, 1e6, 1e6], 1 / 3),  # two liars of four: the lower median is still an honest figure
        ([10.0, 100.0, 100.0, 100.0], 100 / 310),  # honest differences below the cap stand
    ],
)
def test_no_member_reduces_more_than_twice_the_median_share(bandwidths: list[float], largest_share: float) -> None:
    ranges = partition(1 << 20, bandwidths)
    shares = [(hi - lo) / (1 << 20) for lo, hi in ranges]
    assert max(shares) == pytest.approx(largest_share, abs=1e-3), shares
    assert ranges[0][0] == 0
    assert ranges[-1][1] == 1 << 20
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_a_peer_announcing_1e6_mbps_does_not_become_the_reducer_of_the_whole_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It announces 1e6 Mbit/s in its signed join record (others 100): it would have reduced 99.97% of
    the vector, the one reducer whose lies count and everyone's bottleneck."""
    used: list[list[tuple[int, int]]] = []

    def recording(numel: int, bandwidths: list[float]) -> list[tuple[int, int]]:
        used.append(partition(numel, bandwidths))
        return used[-1]

    monkeypatch.setattr(allreduce, "partition", recording)

    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 3, FAST)
        peers += await make_peers(network, 1, replace(FAST, bandwidth_mbps=1e6))
        outcomes = await average(peers, honest_inputs(4, seed=3))
        assert all(o.succeeded and len(o.contributors) == 4 for o in outcomes), outcomes
        liar = outcomes[0].members.index(peers[3].peer_id)
        assert len(used) == 4
        for ranges in used:
            lo, hi = ranges[liar]
            assert (hi - lo) / NUMEL <= 0.41, ranges

    run_virtual(main())


# --- lying reducers ----------------------------------------------------------------------------

Lie = Callable[[torch.Tensor], torch.Tensor]
CODEC = get_codec("none")


def lie_in_results(liar: Peer, lie: Lie, when: Callable[[DataHeader], bool] = lambda header: True) -> None:
    """``liar`` reduces honestly but replaces each result chunk it sends (when ``when``) with ``lie(result)``."""

    def tamper(header: DataHeader, payload: memoryview) -> bytes | None:
        if header.kind not in ("result", "amend") or not len(payload) or not when(header):
            return None
        return CODEC.encode(lie(CODEC.decode(payload).clone()).contiguous())

    intercept(liar, tamper)


def range_of(outcome: Outcome, peer: Peer) -> tuple[int, int]:
    return partition(NUMEL, [FAST.bandwidth_mbps] * len(outcome.members))[outcome.members.index(peer.peer_id)]


LIES: dict[str, Lie] = {
    "scaled_x1000": lambda r: r * 1000,
    "sign_flipped": lambda r: -r,
    "shifted_by_its_norm": lambda r: r + r.norm() / r.numel() ** 0.5,
    "nan": lambda r: torch.full_like(r, float("nan")),
    "huge": lambda r: torch.full_like(r, 3e38),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_reducer_lying_about_its_result_is_found_out_named_and_left_out_next_round(lie: str) -> None:
    """A reducer under a robust rule whose result is far from the inputs (or not finite): every honest peer
    keeps its own values for that range, names the reducer in ``Outcome.distrusted``, and does not group
    with it in the next round."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 5, config_of("median", 5))
        inputs = honest_inputs(5, seed=4)
        originals = [[t[0].clone()] for t in inputs]
        liar = peers[4]
        lie_in_results(liar, LIES[lie])
        outcomes = await average(peers, inputs)
        target = mean_of(originals)[0]
        for i in range(4):
            outcome = outcomes[i]
            assert outcome.succeeded, outcome
            assert liar.peer_id in outcome.distrusted, outcome
            lo, hi = range_of(outcome, liar)
            assert outcome.unaveraged_elements == hi - lo, outcome
            assert torch.equal(inputs[i][0][lo:hi], originals[i][0][lo:hi])  # its own values, not the lie
            rest = torch.cat([inputs[i][0][:lo], inputs[i][0][hi:]])
            assert relative_error(rest, torch.cat([target[:lo], target[hi:]])) < 0.05
        # The next round: the four honest peers average without it.
        outcomes = await average(peers, [[t[0].clone()] for t in originals], round_id=1)
        for outcome in outcomes[:4]:
            assert outcome.succeeded, outcome
            assert set(outcome.members) == {p.peer_id for p in peers[:4]}, outcome
        assert liar.peer_id not in outcomes[0].members

    run_virtual(main())


@pytest.mark.parametrize("codec", ["none", "int8", "sign1bit"])
@pytest.mark.parametrize("rule", ROBUST)
def test_honest_reducers_are_never_distrusted(rule: str, codec: str) -> None:
    """Codec error (and the reducers' error feedback) is in every range alike: no honest result stands out,
    over three rounds, also with a Byzantine sender scaling its update by 100."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 5, config_of(rule, 5, codec=codec))
        for round_id in range(3):
            inputs = honest_inputs(5, seed=10 + round_id)
            inputs[4][0].mul_(100.0)
            outcomes = await average(peers, inputs, round_id=round_id)
            for outcome in outcomes:
                assert outcome.succeeded, outcome
                assert not outcome.distrusted, outcome
                assert outcome.unaveraged_elements == 0, outcome

    run_virtual(main())


def test_what_a_lying_reducer_can_still_do() -> None:
    """Shifting its range by ``alpha`` times its result's RMS along a fixed direction: small shifts pass the
    plausibility check and stay small; the largest that passes moves the honest peers' whole vector by at
    most 0.2 relative (scripts/bench/averaging_byzantine.py measures the sweep)."""

    async def run(alpha: float) -> tuple[float, bool]:
        peers = await make_peers(MemoryNetwork(), 5, config_of("median", 5))
        inputs = honest_inputs(5, seed=5)
        target = mean_of(inputs)[0]
        direction = torch.randn(NUMEL, generator=torch.Generator().manual_seed(6)).sign()
        lie_in_results(peers[4], lambda r: r + alpha * r.norm() / r.numel() ** 0.5 * direction[: r.numel()])
        outcomes = await average(peers, inputs)
        found = all(peers[4].peer_id in o.distrusted for o in outcomes[:4])
        assert found or not any(peers[4].peer_id in o.distrusted for o in outcomes[:4])
        return max(relative_error(inputs[i][0], target) for i in range(4)), found

    async def main() -> None:
        results = {alpha: await run(alpha) for alpha in (0.0, 0.1, 0.3, 1.0, 3.0)}
        assert not results[0.0][1]
        assert results[3.0][1], results  # a shift of three times its RMS is found out
        passed = [error for error, found in results.values() if not found]
        assert max(passed) < 0.2, results

    run_virtual(main())


def test_rounds_do_not_wait_for_a_distrusted_reducer() -> None:
    """A reducer found out keeps no one waiting: its range is not reduced again (that would need its parts)."""

    async def main() -> None:
        peers = await make_peers(MemoryNetwork(), 4, config_of("median", 4))
        lie_in_results(peers[3], lambda r: r * 1000)
        started = asyncio.get_running_loop().time()
        outcomes = await average(peers, honest_inputs(4, seed=7))
        took = asyncio.get_running_loop().time() - started
        assert all(peers[3].peer_id in o.distrusted for o in outcomes[:3]), outcomes
        assert all(o.recovered_elements == 0 for o in outcomes[:3]), outcomes
        assert took < FAST.matchmaking.min_wait + 2 * FAST.deadlines.minimum, took

    run_virtual(main())


def test_a_reducer_lying_in_the_recovery_pass_is_found_out_and_its_share_counted_unaveraged() -> None:
    """A peer dies as it sends its first part; the liar, honest so far, lies about its share of the dead
    peer's range when the survivors reduce it again. That share keeps each honest peer's values; the rest
    of the dead peer's range is recovered."""

    async def main() -> None:
        network = MemoryNetwork()
        peers = await make_peers(network, 5, config_of("median", 5))
        victim, liar = peers[2], peers[4]
        kill_when(network, victim, lambda header: header.kind == "part")
        lie_in_results(liar, lambda r: r * 1000, when=lambda header: header.pass_no == 1)
        outcomes = await average(peers, honest_inputs(5, seed=8))
        for i in (0, 1, 3):
            outcome = outcomes[i]
            assert outcome.succeeded, outcome
            assert victim.peer_id in outcome.failed, outcome
            assert set(outcome.distrusted) == {liar.peer_id}, outcome
            lo, hi = range_of(outcome, victim)
            assert outcome.unaveraged_elements > 0, outcome
            assert outcome.recovered_elements > 0, outcome
            assert outcome.recovered_elements + outcome.unaveraged_elements == hi - lo, outcome

    run_virtual(main())


def test_a_distrusted_peer_is_grouped_with_again_after_distrust_rounds() -> None:
    async def main() -> None:
        config = config_of("median", 5)
        config = replace(config, matchmaking=replace(config.matchmaking, distrust_rounds=1))
        peers = await make_peers(MemoryNetwork(), 5, config)
        lying = [True]
        lie_in_results(peers[4], lambda r: r * 1000, when=lambda header: lying[0])
        outcomes = await average(peers, honest_inputs(5, seed=9))
        assert all(peers[4].peer_id in o.distrusted for o in outcomes[:4]), outcomes
        lying.clear()
        members = []
        for round_id in (1, 2):
            outcomes = await average(peers, honest_inputs(5, seed=9 + round_id), round_id=round_id)
            members.append({len(o.members) for o in outcomes[:4]})
        assert members == [{4}, {5}], members  # left out for one round, then back

    run_virtual(main())
