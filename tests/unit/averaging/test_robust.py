"""Aggregation rules: contracts shared by every rule, exactness of the mean, robustness to one attacker in five."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmnet.averaging import robust
from swarmnet.averaging.robust import AggregationConfig, AggregationRule, aggregate, trim_count
from swarmnet.errors import ConfigError

RULES: tuple[AggregationRule, ...] = ("mean", "trimmed_mean", "median", "centered_clip")
ROBUST: tuple[AggregationRule, ...] = ("trimmed_mean", "median", "centered_clip")
WEIGHTS = {"equal": [1.0] * 5, "unequal": [3.0, 1.0, 4.0, 1.0, 5.0]}


def reference_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w[:, None] * x).sum(0) / w.sum()


def run(rule: AggregationRule, x: torch.Tensor, w: torch.Tensor | None = None, **kwargs: object) -> torch.Tensor:
    weights = torch.ones(x.shape[0]) if w is None else w
    out = aggregate(x, weights, AggregationConfig(rule=rule, **kwargs))  # type: ignore[arg-type]
    assert out.dtype == torch.float32
    assert out.shape == (x.shape[1],)
    return out


# --- contracts of every rule -------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
def test_identical_contributions_give_that_value(rule: AggregationRule, k: int) -> None:
    value = torch.randn(257, generator=torch.Generator().manual_seed(k))
    w = torch.arange(1.0, k + 1)
    assert torch.equal(run(rule, value.expand(k, -1).contiguous(), w), value)


@pytest.mark.parametrize("rule", RULES)
def test_single_contributor_is_returned_as_a_copy(rule: AggregationRule) -> None:
    x = torch.randn(1, 100, generator=torch.Generator().manual_seed(1))
    out = run(rule, x, torch.tensor([7.0]))
    assert torch.equal(out, x[0])
    out += 1
    assert not torch.equal(out, x[0])  # a new tensor, not a view of the input


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
def test_permutation_invariant(rule: AggregationRule, weights: list[float]) -> None:
    gen = torch.Generator().manual_seed(2)
    # Rounded values make ties common, the hard case for trimming with unequal weights.
    x = torch.randint(-3, 4, (5, 1000), generator=gen).float()
    w = torch.tensor(weights)
    expected = run(rule, x, w)
    for _ in range(5):
        perm = torch.randperm(5, generator=gen)
        torch.testing.assert_close(run(rule, x[perm], w[perm]), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_chunked_result_matches_one_chunk(rule: AggregationRule, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(3)
    x, w = torch.randn(5, 1001, generator=gen), torch.tensor(WEIGHTS["unequal"])
    whole = run(rule, x, w)
    monkeypatch.setattr(robust, "_CHUNK_ELEMENTS", 5 * 64)  # 16 chunks, the last one short
    torch.testing.assert_close(run(rule, x, w), whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rule", RULES)
def test_empty_slice(rule: AggregationRule) -> None:
    assert run(rule, torch.empty(4, 0)).shape == (0,)


# --- mean --------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [1e-3, 5e4, 7.0]])
def test_weighted_mean_matches_reference(weights: list[float]) -> None:
    x = torch.randn(3, 10_000, generator=torch.Generator().manual_seed(4)) * 100
    w = torch.tensor(weights)
    out = run("mean", x, w)
    torch.testing.assert_close(out, reference_mean(x, w), rtol=2e-6, atol=1e-5)
    # The float64 accumulation rounds once: the result is the exact value rounded to float32.
    exact = (w.double()[:, None] * x.double()).sum(0) / w.double().sum()
    assert torch.equal(out, exact.float())


def test_mean_does_not_overflow_near_float32_max() -> None:
    x = torch.full((4, 3), 3e38)
    assert torch.equal(run("mean", x, torch.tensor([1.0, 2.0, 3.0, 4.0])), x[0])


def test_integer_weights_are_accepted() -> None:
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(
        aggregate(x, torch.tensor([1, 2, 3]), AggregationConfig()), reference_mean(x, x.new_tensor([1, 2, 3]))
    )


# --- median ------------------------------------------------------------------------------------


def column(values: list[float]) -> torch.Tensor:
    return torch.tensor(values)[:, None]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 1.0, 2.0], 2.0),  # odd k: the middle value
        ([4.0, 1.0, 3.0, 2.0], 2.5),  # even k: midpoint of the middle two
        ([1.0, 9.0], 5.0),  # k = 2: the mean, not the minimum
        ([5.0, 1.0, 5.0, 5.0], 5.0),  # ties
    ],
)
def test_median(values: list[float], expected: float) -> None:
    assert run("median", column(values)).item() == expected


@pytest.mark.parametrize("rule", ROBUST)
@pytest.mark.parametrize("k", [2, 3, 4, 5, 8])
def test_robust_rules_ignore_the_weights(rule: AggregationRule, k: int) -> None:
    """A weight is its sender's claim: a robust rule counts each contributor once, whatever it claims."""
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(k, 1000, generator=gen)
    claimed = torch.ones(k)
    claimed[0] = 1e6
    assert torch.equal(run(rule, x, claimed), run(rule, x))
    assert torch.equal(run(rule, x, torch.rand(k, generator=gen) + 0.1), run(rule, x))


def test_median_equal_weights_matches_torch_for_odd_k() -> None:
    x = torch.randn(7, 5000, generator=torch.Generator().manual_seed(6))
    assert torch.equal(run("median", x), x.median(dim=0).values)
    assert torch.equal(run("median", x, torch.full((7,), 2.5)), x.median(dim=0).values)


# --- trimmed mean ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "fraction", "expected"),
    [(1, 0.2, 0), (2, 0.2, 0), (3, 0.2, 1), (4, 0.2, 1), (5, 0.2, 1), (10, 0.2, 2), (10, 0.0, 0), (4, 0.5, 2)],
)
def test_trim_count(k: int, fraction: float, expected: int) -> None:
    assert trim_count(k, fraction) == expected


def test_trimmed_mean_drops_extremes() -> None:
    x = column([100.0, 1.0, 2.0, -50.0, 4.0])
    # Drops -50 and 100; the rest: (1 + 2 + 4) / 3, whatever the weights.
    assert run("trimmed_mean", x, torch.tensor([1.0, 1.0, 2.0, 1.0, 3.0])).item() == pytest.approx(7 / 3)


def test_trimmed_mean_falls_back_to_median_and_mean() -> None:
    gen = torch.Generator().manual_seed(7)
    x4, w4 = torch.randn(4, 100, generator=gen), torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(run("trimmed_mean", x4, w4, trim_fraction=0.5), run("median", x4, w4))  # k <= 2t
    x2, w2 = torch.randn(2, 100, generator=gen), torch.tensor([1.0, 3.0])
    assert torch.equal(run("trimmed_mean", x2, w2), run("mean", x2))  # t = 0: the unweighted mean
    assert torch.equal(run("trimmed_mean", x4, w4, trim_fraction=0.0), run("mean", x4))


# --- robustness --------------------------------------------------------------------------------

ATTACKS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "scaled_x100": lambda honest: honest * 100,
    "sign_flipped_x10": lambda honest: honest * -10,
    "huge_constant": lambda honest: torch.full_like(honest, 1e30),
    "huge_negative_constant": lambda honest: torch.full_like(honest, -3e38),
}


def honest_updates(k: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, generator=gen)
    return mu + 0.1 * mu.abs() * torch.randn(k, n, generator=gen)


@pytest.mark.parametrize("rule", ROBUST)
@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
@pytest.mark.parametrize("position", [0, 4])
def test_one_byzantine_of_five(
    rule: AggregationRule, attack: Callable[[torch.Tensor], torch.Tensor], weights: list[float], position: int
) -> None:
    x = honest_updates(5, 4096, seed=8)
    w = torch.tensor(weights)
    honest = torch.tensor([i != position for i in range(5)])
    target = reference_mean(x[honest], w[honest])  # the honest weighted mean, which the rules approximate
    x[position] = attack(x[(position + 1) % 5])
    out = run(rule, x, w)
    assert torch.isfinite(out).all()
    assert (out - target).norm() / target.norm() < 0.1
    assert (run("mean", x, w) - target).norm() / target.norm() > 1  # the plain mean is ruined


@pytest.mark.parametrize("tau", [None, 0.5, 100.0])
def test_centered_clip_without_attackers_stays_near_the_mean(tau: float | None) -> None:
    x = honest_updates(6, 2048, seed=9)
    target = reference_mean(x, torch.ones(6))
    out = run("centered_clip", x, torch.arange(1.0, 7.0), clip_tau=tau, clip_iterations=5)
    assert (out - target).norm() / target.norm() < 0.05


def test_centered_clip_with_a_huge_radius_is_the_mean() -> None:
    x, w = honest_updates(5, 512, seed=10), torch.tensor(WEIGHTS["unequal"])
    torch.testing.assert_close(run("centered_clip", x, w, clip_tau=1e30, clip_iterations=1), x.mean(dim=0))


# --- validation --------------------------------------------------------------------------------

GOOD_X = torch.zeros(3, 4)
GOOD_W = torch.ones(3)


@pytest.mark.parametrize(
    ("contributions", "weights", "match"),
    [
        (GOOD_X.double(), GOOD_W, "float32"),
        (GOOD_X.half(), GOOD_W, "float32"),
        ([[0.0]], GOOD_W, "float32"),
        (torch.zeros(12), GOOD_W, "shape"),
        (torch.zeros(2, 3, 2), GOOD_W, "shape"),
        (torch.zeros(0, 4), torch.ones(0), "shape"),
        (GOOD_X, torch.ones(2), "weights must have shape"),
        (GOOD_X, torch.ones(3, 1), "weights must have shape"),
        (GOOD_X, torch.tensor([1.0, 0.0, 1.0]), "finite and > 0"),
        (GOOD_X, torch.tensor([1.0, -2.0, 1.0]), "finite and > 0"),
        (GOOD_X, torch.tensor([1.0, math.nan, 1.0]), "finite and > 0"),
        (GOOD_X, torch.tensor([1.0, math.inf, 1.0]), "finite and > 0"),
        (GOOD_X, torch.tensor([True, True, True]), "real-valued"),
        (torch.tensor([[0.0, 1.0], [math.nan, 0.0]]), torch.ones(2), r"contributions \[1\]"),
        (torch.tensor([[math.inf, 1.0], [0.0, -math.inf]]), torch.ones(2), r"contributions \[0, 1\]"),
    ],
)
@pytest.mark.parametrize("rule", RULES)
def test_bad_inputs_raise_value_error(
    contributions: object, weights: torch.Tensor, match: str, rule: AggregationRule
) -> None:
    with pytest.raises(ValueError, match=match):
        aggregate(contributions, weights, AggregationConfig(rule=rule))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rule": "mode"},
        {"trim_fraction": -0.1},
        {"trim_fraction": 0.6},
        {"trim_fraction": math.nan},
        {"clip_tau": 0.0},
        {"clip_tau": -1.0},
        {"clip_tau": math.inf},
        {"clip_iterations": 0},
        {"clip_iterations": 1.5},
        {"clip_iterations": True},
    ],
)
def test_invalid_config(kwargs: dict[str, object]) -> None:
    config = AggregationConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        config.validate()
    with pytest.raises(ConfigError):
        aggregate(GOOD_X, GOOD_W, config)


def test_default_config_is_valid_and_frozen() -> None:
    config = AggregationConfig()
    config.validate()
    assert config.rule == "mean"
    with pytest.raises(AttributeError):
        config.rule = "median"  # type: ignore[misc]


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 9),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    rule=st.sampled_from(ROBUST),
)
def test_robust_rules_stay_within_the_coordinate_range(k: int, n: int, seed: int, rule: AggregationRule) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(k, n, generator=gen) * 10
    w = torch.randint(1, 20, (k,), generator=gen).float()
    out = run(rule, x, w)
    # Every rule is a per-coordinate convex combination (centered clip: of the rows and the previous v).
    low, high = x.min(dim=0).values, x.max(dim=0).values
    assert bool((out >= low - 1e-4).all())
    assert bool((out <= high + 1e-4).all())
