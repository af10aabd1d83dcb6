"""Drawing a round's participants: Poisson over the active clients under DP, fixed-size otherwise."""

from __future__ import annotations

import random
import statistics

import pytest

from swarmnet.coordinator.sampling import Sample, draw_sample
from swarmnet.federated.randomness import Randomness

ACTIVE = [f"client-{i:02d}" for i in range(20)]


def test_poisson_draws_each_active_client_with_probability_q() -> None:
    rng = random.Random(1)
    draws = [draw_sample(ACTIVE, 5, True, rng) for _ in range(4000)]
    assert {(d.rate, d.population) for d in draws} == {(0.25, 20)}
    for client in ACTIVE:
        frequency = sum(client in d.selected for d in draws) / len(draws)
        assert frequency == pytest.approx(0.25, abs=0.03), client
    sizes = [len(d.selected) for d in draws]
    assert statistics.mean(sizes) == pytest.approx(5, abs=0.15)
    assert statistics.variance(sizes) == pytest.approx(20 * 0.25 * 0.75, rel=0.15)  # binomial, not fixed


def test_fixed_size_draws_without_differential_privacy() -> None:
    rng = random.Random(2)
    sample = draw_sample(ACTIVE, 5, False, rng)
    assert len(sample.selected) == 5
    assert set(sample.selected) <= set(ACTIVE)
    assert list(sample.selected) == sorted(sample.selected)
    assert draw_sample(ACTIVE[:3], 5, False, rng) == Sample(tuple(ACTIVE[:3]), 1.0, 3)
    assert draw_sample(ACTIVE[:3], 5, True, rng) == Sample(tuple(ACTIVE[:3]), 1.0, 3)  # q = 1: everyone
    assert draw_sample([], 5, True, rng) == Sample((), 0.0, 0)


def test_draws_from_the_os_are_not_repeatable() -> None:
    randomness = Randomness()
    draws = {draw_sample(ACTIVE, 5, True, randomness.rng(1)).selected for _ in range(5)}
    assert len(draws) > 1


def test_the_insecure_mode_draws_as_coordinators_always_did() -> None:
    randomness = Randomness(insecure_deterministic_seed=0)
    expected = tuple(sorted(random.Random("0:3").sample(ACTIVE, 5)))
    assert draw_sample(ACTIVE, 5, False, randomness.rng(3)).selected == expected


def test_problems_of_a_draw() -> None:
    sample = Sample(("a", "b"), 0.5, 4)
    assert sample.problem(2) == ""
    assert "3 needed" in sample.problem(3)
    assert "max_clients (1)" in sample.problem(1, max_clients=1)
    with pytest.raises(ValueError, match="clients_per_round"):
        draw_sample(ACTIVE, 0, True, random.Random())
