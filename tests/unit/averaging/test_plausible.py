"""ResultCheck: a result far from our values, by much more than the round's other results, is taken back out."""

from __future__ import annotations

import torch

from swarmnet.averaging.plausible import ResultCheck

RANGES = {0: (0, 100), 1: (100, 200), 2: (200, 300), 3: (300, 400)}


def judged(
    own: torch.Tensor, results: dict[int, torch.Tensor], tolerance: float = 4.0
) -> tuple[dict[int, str], torch.Tensor]:
    """Write each reducer's result over ``own`` as the round does, then judge them (we are member 0)."""
    flat = own.clone()
    check = ResultCheck(flat, tolerance)
    for reducer, values in results.items():
        a, b = RANGES[reducer]
        check.keep(a, b)
        flat[a:b] = values
        check.measure(reducer, [(a, b)])
    refused = check.refuse_outliers(me=0)
    assert all(spans == [RANGES[r]] for r, (_, spans) in refused.items())
    return {r: reason for r, (reason, _) in refused.items()}, flat


def test_an_outlier_is_refused_and_our_values_restored() -> None:
    gen = torch.Generator().manual_seed(0)
    own = torch.randn(400, generator=gen)
    results = {r: own[a:b] + 0.1 * torch.randn(b - a, generator=gen) for r, (a, b) in RANGES.items()}
    results[2] = own[200:300] + 0.5 * torch.randn(100, generator=gen)  # 5x the others' distance
    refused, flat = judged(own, results)
    assert set(refused) == {2}
    assert "x our values' norm" in refused[2]
    assert torch.equal(flat[200:300], own[200:300])
    assert torch.equal(flat[300:400], results[3])


def test_results_within_the_tolerance_stand() -> None:
    gen = torch.Generator().manual_seed(1)
    own = torch.randn(400, generator=gen)
    results = {r: own[a:b] + 0.1 * (1 + r) * torch.randn(b - a, generator=gen) for r, (a, b) in RANGES.items()}
    refused, flat = judged(own, results)  # ratios 0.1 to 0.4: at most 4x the lower median (0.2)
    assert refused == {}
    assert torch.equal(flat[300:400], results[3])


def test_our_own_range_is_never_refused_and_a_lone_other_sets_no_reference_of_its_own() -> None:
    own = torch.ones(400)
    refused, _ = judged(own, {0: torch.full((100,), 50.0), 1: torch.ones(100)})
    assert refused == {}  # our own range is the outlier: we reduced it ourselves


def test_exact_agreement_makes_any_deviation_an_outlier_and_zero_values_are_handled() -> None:
    own = torch.zeros(400)
    own[:300] = 1.0
    results = {0: torch.ones(100), 1: torch.ones(100), 2: torch.ones(100) + 1e-3, 3: torch.zeros(100)}
    refused, _ = judged(own, results)
    assert set(refused) == {2}  # the others are exact (ratio 0; range 3 is 0 over our 0)
    refused, _ = judged(own, {0: torch.ones(100), 1: torch.ones(100), 3: torch.full((100,), 1e-9)})
    assert set(refused) == {3}  # anything over our zeros, while the rest agree exactly


def test_overflowing_results_are_refused_not_nan() -> None:
    own = torch.full((400,), -3e38)
    refused, _ = judged(own, {0: own[:100].clone(), 1: own[100:200].clone(), 2: torch.full((100,), 3e38)})
    assert set(refused) == {2}
