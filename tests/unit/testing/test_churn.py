"""The churn simulation of the kit on a small swarm: membership tracks the ground truth exactly."""

from __future__ import annotations

import pytest

from swarmnet.errors import ConfigError
from swarmnet.testing import ChurnConfig, simulate_churn


def test_a_small_swarm_under_churn_is_listed_exactly() -> None:
    report = simulate_churn(ChurnConfig(peers=40, seed=2, join_window=60.0, mean_lifetime=60.0, duration=150.0))
    assert report.joins == 40
    assert report.clean_leaves + report.deaths > 0
    assert report.checks == 15
    assert 0 < report.max_listed <= 40
    assert (report.missing, report.stale_clean, report.stale_dead) == (0, 0, 0)
    assert report.virtual_seconds == pytest.approx(150.0)


def test_an_impossible_swarm_is_refused() -> None:
    with pytest.raises(ConfigError):
        simulate_churn(ChurnConfig(peers=0))
