"""The adaptive policy: the decision rules exactly (stand-in codecs, brute force), then real codecs."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence

import pytest
import torch

from swarmnet.compression.base import Codec, flat_float
from swarmnet.compression.cast import BFloat16Codec, Float16Codec, NoneCodec
from swarmnet.compression.int4 import Int4Codec
from swarmnet.compression.int8 import Int8Codec
from swarmnet.compression.policy import CandidateCost, CompressionPolicy, PolicyConfig, decide
from swarmnet.compression.sign1bit import Sign1BitCodec
from swarmnet.compression.topk import TopKCodec
from swarmnet.compression.wire import CodecId, Header
from swarmnet.errors import ConfigError


class FakeCodec(Codec):
    """A stand-in of known cost: payloads of exactly ``size`` bytes, decoding to ``x * (1 - rel_error)``."""

    codec_id = CodecId.NONE

    def __init__(self, name: str, size: int, rel_error: float) -> None:
        self.name, self.size, self.rel_error = name, size, rel_error
        self._sent: dict[bytes, torch.Tensor] = {}

    def encode(self, tensor: torch.Tensor) -> bytes:
        payload = len(self._sent).to_bytes(8, "little") + bytes(self.size - 8)
        self._sent[payload] = flat_float(tensor).double() * (1 - self.rel_error)
        return payload

    def decode(
        self,
        payload: bytes | bytearray | memoryview,
        max_elements: int | None = None,
        *,
        shape: Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        return self._sent[bytes(payload)]

    @classmethod
    def decode_sections(cls, header: Header, sections: list[memoryview]) -> torch.Tensor:
        raise NotImplementedError

    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        return self.size / (numel * dtype.itemsize)


def lookup_of(*codecs: FakeCodec) -> Callable[[str], FakeCodec]:
    return {codec.name: codec for codec in codecs}.__getitem__


ALL_FAKES = ("exact", "half", "small", "tiny")
FAKES_LOOKUP = lookup_of(
    FakeCodec("exact", 1000, 0.0),
    FakeCodec("half", 500, 0.01),
    FakeCodec("small", 200, 0.1),
    FakeCodec("tiny", 100, 0.5),
)


def policy_of(
    candidates: tuple[str, ...] = ALL_FAKES, *, error_budget: float | None = None, byte_budget: int | None = None
) -> CompressionPolicy:
    config = PolicyConfig(candidates=candidates, error_budget=error_budget, byte_budget=byte_budget)
    return CompressionPolicy(config, FAKES_LOOKUP)


# --- error budget -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "expected"), [(0.0, "exact"), (0.005, "exact"), (0.05, "half"), (0.2, "small"), (0.9, "tiny")]
)
def test_error_budget_picks_the_smallest_payload_within_budget(budget: float, expected: str) -> None:
    policy = policy_of(error_budget=budget)
    tensors = {"a": torch.randn(100), "b": torch.randn(3, 7)}
    assert policy.plan(tensors) == {"a": expected, "b": expected}
    plan = policy.last_plan
    assert plan is not None
    assert plan.budget_met
    assert plan.predicted_bytes == 2 * FAKES_LOOKUP(expected).size
    assert all(error <= budget for error in plan.predicted_errors.values())


def test_error_budget_falls_back_to_the_most_accurate_candidate() -> None:
    policy = policy_of(("tiny", "small", "half"), error_budget=0.001)
    assert policy.plan({"a": torch.randn(50)}) == {"a": "half"}
    plan = policy.last_plan
    assert plan is not None
    assert not plan.budget_met
    assert plan.predicted_errors["a"] == pytest.approx(0.01)


def test_measured_costs_are_the_real_sizes_and_errors() -> None:
    policy = policy_of(error_budget=0.1)
    costs = policy.measure({"a": torch.randn(64) * 3})
    for name in ALL_FAKES:
        fake = FAKES_LOOKUP(name)
        assert costs["a"][name].nbytes == fake.size
        assert costs["a"][name].rel_error == pytest.approx(fake.rel_error, abs=1e-12)
        assert not costs["a"][name].sampled


# --- byte budget: the DP against brute force ----------------------------------------------------


def brute_force(costs: dict[str, dict[str, CandidateCost]], budget: int) -> float | None:
    """The least total squared error of any assignment within ``budget``; None if none fits."""
    best = None
    names = list(costs)
    for combo in itertools.product(*(costs[name].items() for name in names)):
        if sum(cost.nbytes for _, cost in combo) <= budget:
            error = sum(cost.sq_error for _, cost in combo)
            best = error if best is None else min(best, error)
    return best


def random_costs(rng: random.Random, layers: int) -> dict[str, dict[str, CandidateCost]]:
    costs = {}
    for layer in range(layers):
        options = {}
        for c in range(rng.randint(1, 5)):
            rel = rng.choice([0.0, rng.random()])
            options[f"c{c}"] = CandidateCost(nbytes=rng.randint(1, 300), rel_error=rel, sq_error=rel**2 * 7.0)
        costs[f"layer{layer}"] = options
    return costs


def test_byte_budget_dp_finds_the_brute_force_optimum() -> None:
    rng = random.Random(1234)
    checked_feasible = checked_infeasible = 0
    for _ in range(300):
        costs = random_costs(rng, rng.randint(3, 5))
        budget = rng.randint(1, 1200)
        config = PolicyConfig(candidates=("c0",), byte_budget=budget, dp_buckets=2000)  # unit 1: exact
        plan = decide(costs, dict.fromkeys(costs, 7.0), config)
        optimum = brute_force(costs, budget)
        chosen = [costs[name][codec] for name, codec in plan.assignment.items()]
        assert plan.predicted_bytes == sum(cost.nbytes for cost in chosen)
        if optimum is None:
            cheapest = sum(min(cost.nbytes for cost in options.values()) for options in costs.values())
            assert plan.predicted_bytes == cheapest
            assert not plan.budget_met
            checked_infeasible += 1
        else:
            assert plan.budget_met
            assert plan.predicted_bytes <= budget
            assert sum(cost.sq_error for cost in chosen) == pytest.approx(optimum, rel=1e-9, abs=1e-12)
            checked_feasible += 1
    assert checked_feasible > 100
    assert checked_infeasible > 10


def test_coarse_discretisation_stays_within_budget_and_near_optimal() -> None:
    rng = random.Random(99)
    for _ in range(200):
        costs = random_costs(rng, rng.randint(3, 5))
        budget = rng.randint(200, 1200)
        buckets = rng.randint(5, 50)
        plan = decide(costs, {}, PolicyConfig(candidates=("c0",), byte_budget=budget, dp_buckets=buckets))
        optimum = brute_force(costs, budget)
        if optimum is None:
            continue
        error = sum(costs[name][codec].sq_error for name, codec in plan.assignment.items())
        unit = math.ceil(budget / buckets)
        # Rounding up can cost at most one unit per layer of budget, never more.
        assert plan.predicted_bytes <= budget or not plan.budget_met
        assert error >= optimum - 1e-12
        shrunk = brute_force(costs, budget - unit * len(costs))
        if shrunk is not None and plan.budget_met:
            assert error <= shrunk + 1e-12


def test_bytes_left_by_coarse_rounding_are_spent_on_upgrades() -> None:
    option = {"cheap": CandidateCost(nbytes=100, rel_error=1.0, sq_error=10.0)}
    option["good"] = CandidateCost(nbytes=150, rel_error=0.3, sq_error=1.0)
    costs = {f"layer{i}": option for i in range(3)}
    # Units of 100 bytes: "good" costs 2 units, so the DP alone affords one of them (350 bytes).
    plan = decide(costs, {}, PolicyConfig(candidates=("cheap",), byte_budget=400, dp_buckets=4))
    assert sorted(plan.assignment.values()) == ["cheap", "good", "good"]
    assert plan.predicted_bytes == 400
    assert plan.budget_met
    # Rounded up, even three "cheap" (3 units) overflow a capacity of 2 units; unrounded they fit.
    plan = decide(costs, {}, PolicyConfig(candidates=("cheap",), byte_budget=399, dp_buckets=2))
    assert plan.budget_met
    assert plan.predicted_bytes == 350


def test_byte_budget_through_the_policy_weighs_errors_by_norm() -> None:
    # The big-norm layer deserves the accurate codec; the small-norm ones can take the loss.
    tensors = {"big": torch.randn(100) * 100, "small1": torch.randn(100) * 0.01, "small2": torch.randn(100) * 0.01}
    policy = policy_of(("exact", "half", "tiny"), byte_budget=1000 + 100 + 100)
    assert policy.plan(tensors) == {"big": "exact", "small1": "tiny", "small2": "tiny"}
    costs = policy.measure(tensors)
    plan = policy.last_plan
    assert plan is not None
    assert plan.budget_met
    assert plan.predicted_bytes == 1200
    assert sum(costs[n][c].sq_error for n, c in plan.assignment.items()) == pytest.approx(brute_force(costs, 1200))


def test_byte_budget_below_the_cheapest_choice_returns_the_cheapest_and_says_so() -> None:
    policy = policy_of(byte_budget=150)
    assert policy.plan({"a": torch.randn(10), "b": torch.randn(10)}) == {"a": "tiny", "b": "tiny"}
    plan = policy.last_plan
    assert plan is not None
    assert not plan.budget_met
    assert plan.predicted_bytes == 200


def test_ties_go_to_the_smaller_payload() -> None:
    lookup = lookup_of(FakeCodec("big_exact", 400, 0.0), FakeCodec("small_exact", 100, 0.0))
    config = PolicyConfig(candidates=("big_exact", "small_exact"), byte_budget=10_000)
    assert CompressionPolicy(config, lookup).plan({"a": torch.randn(8)}) == {"a": "small_exact"}
    zero = {"z": torch.zeros(8)}  # every codec is exact on zeros: the cheapest wins
    config = PolicyConfig(candidates=("exact", "tiny"), error_budget=0.0)
    assert CompressionPolicy(config, FAKES_LOOKUP).plan(zero) == {"z": "tiny"}


# --- the policy object --------------------------------------------------------------------------


def test_codec_for_statistics_and_last_plan() -> None:
    policy = policy_of(error_budget=0.05)
    assert policy.last_plan is None
    assert policy.statistics().plans == 0
    with pytest.raises(KeyError, match="not in the current plan"):
        policy.codec_for("a")
    policy.plan({"a": torch.randn(10), "b": torch.randn(2, 5).double()})
    assert policy.codec_for("a") is FAKES_LOOKUP("half")
    stats = policy.statistics()
    assert stats.plans == 1
    assert stats.tensors == 2
    assert stats.raw_bytes == 10 * 4 + 10 * 8
    assert stats.predicted_bytes == 1000
    assert dict(stats.codec_counts) == {"half": 2}
    assert stats.budget_met
    assert stats.total_rel_error == pytest.approx(0.01)
    with pytest.raises(KeyError):
        policy.codec_for("c")


def test_non_floating_tensors_are_refused() -> None:
    with pytest.raises(TypeError, match="'steps'"):
        policy_of(error_budget=0.1).plan({"steps": torch.arange(5)})


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # no budget
        {"error_budget": 0.1, "byte_budget": 100},  # both
        {"error_budget": -0.1},
        {"error_budget": math.nan},
        {"error_budget": math.inf},
        {"byte_budget": 0},
        {"byte_budget": 10.5},
        {"byte_budget": True},
        {"error_budget": 0.1, "candidates": ()},
        {"error_budget": 0.1, "candidates": ("fp16", "fp16")},
        {"error_budget": 0.1, "candidates": ["fp16"]},
        {"error_budget": 0.1, "candidates": ("",)},
        {"error_budget": 0.1, "sample_block": 0},
        {"error_budget": 0.1, "sample_block": 4096, "max_measured_elements": 4096},
        {"error_budget": 0.1, "dp_buckets": 0},
        {"error_budget": 0.1, "dp_buckets": 10**9},
    ],
)
def test_invalid_configs_raise_config_error(kwargs: dict[str, object]) -> None:
    config = PolicyConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        config.validate()
    with pytest.raises(ConfigError):
        CompressionPolicy(config, FAKES_LOOKUP)


def test_unknown_candidate_names_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="unknown candidate codec 'nope'"):
        policy_of(("exact", "nope"), error_budget=0.1)
    # The default lookup is the registry; its message lists what is known.
    with pytest.raises(ConfigError, match=r"unknown candidate codec 'no-such-codec'.*known"):
        CompressionPolicy(PolicyConfig(candidates=("no-such-codec",), error_budget=0.1))


# --- real codecs --------------------------------------------------------------------------------


def real_codecs() -> dict[str, Codec]:
    return {
        "none": NoneCodec("none"),
        "fp16": Float16Codec("fp16"),
        "bf16": BFloat16Codec("bf16"),
        "int8": Int8Codec("int8"),
        "int4": Int4Codec("int4"),
        "sign1bit": Sign1BitCodec("sign1bit"),
        "topk1pct": TopKCodec("topk1pct", ratio=0.01),
    }


def layers() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    n = 20_000
    return {
        "heavy_tailed": torch.randn(n, generator=generator) * torch.rand(n, generator=generator).pow(4),
        "gaussian": torch.randn(100, 200, generator=generator),
        "norm_weight": 1 + 0.001 * torch.randn(512, generator=generator),
        "sparse": torch.randn(n, generator=generator) * (torch.rand(n, generator=generator) < 0.005),
        "bias": torch.randn(64, generator=generator) * 1e-3,
    }


def test_real_codecs_costs_match_a_real_round_trip() -> None:
    codecs = real_codecs()
    policy = CompressionPolicy(PolicyConfig(candidates=tuple(codecs), error_budget=0.01), codecs.__getitem__)
    tensors = layers()
    costs = policy.measure(tensors)
    for name, tensor in tensors.items():
        for codec_name, codec in codecs.items():
            payload = codec.encode(tensor)
            decoded = codec.decode(payload)
            expected = float((decoded.double() - tensor.double()).norm() / tensor.double().norm())
            assert costs[name][codec_name].nbytes == len(payload), (name, codec_name)
            assert costs[name][codec_name].rel_error == pytest.approx(expected, rel=1e-6, abs=1e-12)
        assert costs[name]["none"].rel_error == 0.0


@pytest.mark.parametrize("error_budget", [0.0, 1e-3, 1e-2, 0.1, 0.5])
def test_real_codecs_error_budget(error_budget: float) -> None:
    codecs = real_codecs()
    policy = CompressionPolicy(PolicyConfig(candidates=tuple(codecs), error_budget=error_budget), codecs.__getitem__)
    tensors = layers()
    assignment = policy.plan(tensors)
    costs = policy.measure(tensors)
    plan = policy.last_plan
    assert plan is not None
    assert plan.budget_met  # "none" is always within budget
    for name, codec_name in assignment.items():
        assert costs[name][codec_name].rel_error <= error_budget
        within = [c.nbytes for c in costs[name].values() if c.rel_error <= error_budget]
        assert costs[name][codec_name].nbytes == min(within)
    if error_budget == 0.0:
        assert set(assignment.values()) == {"none"}
    if error_budget >= 1e-3:  # fp16's error is ~3e-4: nothing needs the raw floats
        assert "none" not in assignment.values()


def test_real_codecs_byte_budget_is_optimal_and_within_budget() -> None:
    codecs = real_codecs()
    tensors = layers()
    raw = sum(t.numel() * 4 for t in tensors.values())
    for fraction in (0.05, 0.15, 0.3, 0.6):
        budget = int(raw * fraction)
        config = PolicyConfig(candidates=tuple(codecs), byte_budget=budget, dp_buckets=100_000)
        policy = CompressionPolicy(config, codecs.__getitem__)
        policy.plan(tensors)
        plan = policy.last_plan
        assert plan is not None
        costs = policy.measure(tensors)
        optimum = brute_force(costs, budget)
        if optimum is None:
            assert not plan.budget_met
            continue
        assert plan.budget_met
        assert plan.predicted_bytes <= budget
        error = sum(costs[n][c].sq_error for n, c in plan.assignment.items())
        assert error >= optimum * (1 - 1e-9)
        # The DP discretises to units of ceil(budget / buckets) bytes: optimal up to one unit per layer.
        shrunk = brute_force(costs, budget - len(tensors) * math.ceil(budget / 100_000))
        assert shrunk is not None
        assert error <= shrunk * (1 + 1e-9) + 1e-12


def test_large_tensors_are_measured_on_a_seeded_sample() -> None:
    generator = torch.Generator().manual_seed(1)
    big = torch.randn(300, 1001, generator=generator) * torch.rand(300, 1001, generator=generator).pow(4)
    codecs = real_codecs()
    config = PolicyConfig(candidates=tuple(codecs), error_budget=0.01, max_measured_elements=32768, sample_block=4096)
    policy = CompressionPolicy(config, codecs.__getitem__)
    costs = policy.measure({"big": big})
    assert costs == policy.measure({"big": big})  # the same sample every time
    for codec_name, codec in codecs.items():
        cost = costs["big"][codec_name]
        assert cost.sampled
        payload = codec.encode(big)
        decoded = codec.decode(payload).double()
        full_error = float((decoded - big.double()).norm() / big.double().norm())
        if codec_name in ("none", "fp16", "bf16"):
            assert cost.nbytes == len(payload)  # linear in the blocks: the affine fit is exact
        elif codec_name.startswith("topk"):
            # Index gaps are bit-packed at the width of the largest gap, which grows with the tensor.
            assert cost.nbytes == pytest.approx(len(payload), rel=0.1)
        else:
            assert cost.nbytes == pytest.approx(len(payload), rel=0.01)  # a partial last block at most
        assert cost.rel_error == pytest.approx(full_error, rel=0.25, abs=1e-9)
