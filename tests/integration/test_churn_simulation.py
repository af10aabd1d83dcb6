"""1,000 peers join, heartbeat, leave or die on the in-memory transport, in virtual time."""

from __future__ import annotations

import pytest

from swarmnet.errors import ConfigError
from swarmnet.testing import ChurnConfig, ChurnReport, simulate_churn


def test_thousand_peer_churn_tracks_ground_truth() -> None:
    report = simulate_churn(ChurnConfig(peers=1000, seed=7))
    print(f"1,000-peer churn: {report.virtual_seconds:.0f} virtual s in {report.wall_seconds:.1f} wall s")
    assert report.joins == 1000
    assert report.clean_leaves > 300
    assert report.deaths > 300
    assert report.max_listed > 400  # peers overlap: the swarm is large at its peak
    assert report.checks == 60
    assert (report.missing, report.stale_clean, report.stale_dead) == (0, 0, 0)


def test_same_seed_same_history() -> None:
    first = simulate_churn(ChurnConfig(peers=60, seed=3, duration=200.0))
    again = simulate_churn(ChurnConfig(peers=60, seed=3, duration=200.0))
    other = simulate_churn(ChurnConfig(peers=60, seed=4, duration=200.0))

    def history(r: ChurnReport) -> tuple[int, int, int, int]:
        return r.joins, r.clean_leaves, r.deaths, r.max_listed

    assert history(first) == history(again)
    assert history(first) != history(other)


def test_invalid_simulation_is_refused() -> None:
    with pytest.raises(ConfigError):
        simulate_churn(ChurnConfig(peers=0))
