"""The simulated swarm's telemetry: plausible, deterministic reports that advance with ``tick``."""

from __future__ import annotations

import math
from collections import Counter

from swarmnet.testing import FEDERATED_RUN, simulated_entries, simulated_peer_id

NOW = 1_800_000_000.0


def test_the_swarm_has_a_coordinator_trainers_and_volunteers_with_unique_ids() -> None:
    entries = simulated_entries(50, NOW)
    assert len({e.peer_id for e in entries}) == 50
    assert all(e.peer_id.startswith("12D3KooW") for e in entries)
    roles = Counter(e.report.role for e in entries)
    assert roles["coordinator"] == 1
    assert roles["volunteer"] == 10
    assert roles["trainer"] == 39
    coordinator = next(e.report for e in entries if e.report.role == "coordinator")
    assert coordinator.run == FEDERATED_RUN
    assert coordinator.federated
    assert entries[0].peer_id == simulated_peer_id(0)


def test_reports_are_fresh_and_their_numbers_plausible() -> None:
    for entry in simulated_entries(20, NOW, ttl=30.0):
        assert NOW - 1.0 <= entry.timestamp <= NOW < entry.expires_at == NOW + 30.0
        report = entry.report
        if report.role != "trainer":
            continue
        steps = [p.step for p in report.losses]
        assert steps == sorted(steps)
        assert all(math.isfinite(p.loss) and 0 < p.loss < 10 for p in report.losses)
        assert report.loss == report.losses[-1].loss
        assert report.samples_per_s is not None
        assert report.samples_per_s > 0
        assert all(r.contributors <= r.group_size for r in report.averaging)


def test_a_later_tick_advances_training_and_the_same_seed_repeats() -> None:
    def trainer_steps(tick: int) -> list[int]:
        return [e.report.step or 0 for e in simulated_entries(10, NOW, tick=tick) if e.report.role == "trainer"]

    assert all(later == earlier + 30 for earlier, later in zip(trainer_steps(0), trainer_steps(3), strict=True))
    assert simulated_entries(10, NOW, seed=5) == simulated_entries(10, NOW, seed=5)
    assert simulated_entries(10, NOW, seed=5) != simulated_entries(10, NOW, seed=6)
