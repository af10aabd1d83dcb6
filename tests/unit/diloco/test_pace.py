"""The pace bound on others' claims and the schedule's round count."""

from __future__ import annotations

import logging

import pytest

from swarmnet.diloco.pace import PaceBound
from tests.unit.diloco.harness import diloco


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


@pytest.mark.parametrize(("inner_steps", "fragments"), [(5, 1), (6, 3), (10, 4), (7, 7), (12, 5)])
def test_syncs_through_counts_every_fragment_sync_of_the_schedule(inner_steps: int, fragments: int) -> None:
    config = diloco(inner_steps=inner_steps, fragments=fragments)
    counted = 0
    for step in range(4 * inner_steps + 3):
        counted += len(config.syncs_after(step)) if step else 0
        assert config.syncs_through(step) == counted, step


def test_claims_are_bounded_by_our_reference_point_and_the_time_since() -> None:
    clock = FakeClock()
    bound = PaceBound(diloco(inner_steps=5), max_step_rate=2.0, clock=clock)
    assert bound.max_step() is None
    assert bound.allows(10**7)  # before any reference point, a step alone is not judged
    assert not bound.allows(10, rounds=3)  # but 3 rounds in 10 steps of H=5 never happen
    bound.mark(20)
    assert bound.max_step() == 30  # two sync intervals of slack
    assert bound.allows(30, rounds=6)
    assert not bound.allows(31)
    clock.now += 10.0
    assert bound.max_step() == 50  # + 2 steps/s for 10 s
    assert not bound.allows(10**7, rounds=10**6)


def test_a_peer_s_rejected_claims_are_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    bound = PaceBound(diloco(inner_steps=5), max_step_rate=1.0, clock=FakeClock())
    bound.mark(0)
    with caplog.at_level(logging.WARNING, logger="swarmnet.diloco.pace"):
        assert not bound.check("attacker", 10**7, 10**6)
        assert not bound.check("attacker", 10**7 + 1, 10**6)
        assert bound.check("honest", 5, 1)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "ignoring attacker's claim of step 10000000, round 1000000"
    ]
