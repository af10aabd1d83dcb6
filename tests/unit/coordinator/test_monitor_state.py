"""MonitorState: peers listed, greyed and dropped on time; merged histories; totals; Prometheus text."""

from __future__ import annotations

import json
import math
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest

from swarmnet.coordinator.monitor.prometheus import escape_label
from swarmnet.coordinator.monitor.state import MonitorState
from swarmnet.telemetry.reader import TelemetryEntry
from swarmnet.telemetry.record import AveragingSummary, FederatedRoundSummary, LossPoint, TelemetryReport
from swarmnet.testing import simulated_entries, simulated_peer_id

T0 = 1_800_000_000.0
A, B, C = (simulated_peer_id(i) for i in (1, 2, 3))


def entry(peer_id: str, at: float, ttl: float = 30.0, **fields: Any) -> TelemetryEntry:
    return TelemetryEntry(peer_id, TelemetryReport(**fields), at, at + ttl)


def peers(state: MonitorState, now: float) -> dict[str, dict[str, Any]]:
    return {p["peer_id"]: p for p in state.snapshot(now)["peers"]}


def test_peers_listed_with_first_and_last_seen() -> None:
    state = MonitorState("main", stale_s=5, drop_s=20)
    state.ingest([entry(A, T0, role="trainer", run="r"), entry(B, T0 - 1)], T0)
    state.ingest([entry(A, T0 + 2, role="trainer", run="r", step=5)], T0 + 2)
    listed = peers(state, T0 + 2)
    assert set(listed) == {A, B}
    assert listed[A]["first_seen"] == T0
    assert listed[A]["last_seen"] == T0 + 2
    assert listed[A]["step"] == 5
    assert {"peer_id", "role", "last_seen"} <= listed[B].keys()
    assert json.loads(state.snapshot_json())["peers"][0]["peer_id"] in {A, B}


def test_silent_peer_goes_stale_then_is_dropped() -> None:
    state = MonitorState("main", stale_s=5, drop_s=20)
    state.ingest([entry(A, T0, ttl=100)], T0)
    for t in (T0 + 3, T0 + 6, T0 + 21):
        state.ingest([entry(A, T0, ttl=100)], t)  # the same old report, read again
        snapshot = state.snapshot(t)
        if t == T0 + 3:
            assert snapshot["peers"][0]["status"] == "live"
        elif t == T0 + 6:
            assert snapshot["peers"][0]["status"] == "stale"
            assert snapshot["totals"]["stale"] == 1
        else:
            assert snapshot["peers"] == []


def test_expired_or_departed_peers_are_dropped() -> None:
    state = MonitorState("main", stale_s=5, drop_s=60)
    state.ingest([entry(A, T0, ttl=3), entry(B, T0)], T0)
    state.ingest([entry(B, T0 + 1, state="left")], T0 + 4)
    assert peers(state, T0 + 4) == {}


def test_loss_curves_merge_peers_and_count_each_point_once() -> None:
    state = MonitorState("main")
    points = (LossPoint(step=1, loss=4.0), LossPoint(step=2, loss=3.0))
    state.ingest([entry(A, T0, run="r", losses=points), entry(B, T0, run="r", losses=points[:1])], T0)
    overlapping = (*points, LossPoint(step=3, loss=2.0))
    state.ingest([entry(A, T0 + 1, run="r", losses=overlapping)], T0 + 1)  # steps 1, 2 already counted
    (run,) = state.snapshot(T0 + 1)["runs"]
    assert run["run"] == "r"
    assert run["curve"] == {
        "unit": "step",
        "steps": [1, 2, 3],
        "mean": [4.0, 3.0, 2.0],
        "min": [4.0, 3.0, 2.0],
        "max": [4.0, 3.0, 2.0],
    }
    state.ingest([entry(B, T0 + 2, run="r", losses=(LossPoint(step=2, loss=5.0),))], T0 + 2)
    curve = state.snapshot(T0 + 2)["runs"][0]["curve"]
    assert curve["mean"][1] == 4.0
    assert curve["min"][1] == 3.0
    assert curve["max"][1] == 5.0


def test_runs_count_agrees_with_the_runs_listed_as_their_peers_go_stale_and_leave() -> None:
    state = MonitorState("main", stale_s=5, drop_s=20, ended_keep_s=100)
    points = (LossPoint(step=1, loss=4.0),)
    state.ingest([entry(A, T0, run="r", losses=points), entry(B, T0, run="s", losses=points)], T0)
    state.ingest([entry(A, T0 + 4, run="r", losses=points)], T0 + 6)  # B's report is 6 s old: stale

    def runs(now: float) -> tuple[dict[str, Any], dict[str, tuple[str, int, int]]]:
        snapshot = state.snapshot(now)
        listed = {r["run"]: (r["status"], r["peers"], r["live_peers"]) for r in snapshot["runs"]}
        return snapshot["totals"], listed

    totals, listed = runs(T0 + 6)
    assert listed == {"r": ("active", 1, 1), "s": ("idle", 1, 0)}
    assert (totals["runs"], totals["runs_active"]) == (2, 1)
    state.ingest([entry(A, T0 + 7, run="r", state="left")], T0 + 7)
    totals, listed = runs(T0 + 7)
    assert listed == {"r": ("ended", 0, 0), "s": ("idle", 1, 0)}, "a run whose peers left keeps its chart, as ended"
    assert (totals["runs"], totals["runs_active"]) == (2, 0)
    assert state.snapshot(T0 + 7)["runs"][0]["last_live"] == T0 + 6
    assert "swarmnet_runs_active 0\n" in state.prometheus(T0 + 7)
    state.ingest([], T0 + 99)  # B was dropped after drop_s
    totals, listed = runs(T0 + 99)
    assert listed == {"r": ("ended", 0, 0), "s": ("ended", 0, 0)}
    assert (totals["runs"], totals["runs_active"]) == (2, 0)
    state.ingest([], T0 + 6 + 101)
    totals, listed = runs(T0 + 6 + 101)
    assert listed == {}, "a curve is forgotten ended_keep_s after its run's last live peer"
    assert (totals["runs"], totals["runs_active"]) == (0, 0)


def test_a_coordinators_loss_curve_counts_rounds() -> None:
    state = MonitorState("main")
    rounds = (LossPoint(step=1, loss=2.0), LossPoint(step=2, loss=1.5))
    state.ingest([entry(A, T0, role="coordinator", run="fed", round=2, losses=rounds)], T0)
    state.ingest([entry(B, T0, role="trainer", run="lm", step=2, losses=rounds)], T0)
    units = {r["run"]: r["curve"]["unit"] for r in state.snapshot(T0)["runs"]}
    assert units == {"fed": "round", "lm": "step"}


def test_loss_curve_is_bounded() -> None:
    state = MonitorState("main")
    for k in range(60):
        losses = tuple(LossPoint(step=k * 40 + s, loss=1.0) for s in range(40))
        state.ingest([entry(A, T0 + k, run="r", losses=losses)], T0 + k)
    steps = state.snapshot(T0 + 60)["runs"][0]["curve"]["steps"]
    assert 1000 <= len(steps) <= 1250
    assert steps[-1] == 60 * 40 - 1


def test_totals_sum_peers_and_stay_monotone_when_peers_leave() -> None:
    state = MonitorState("main", stale_s=5, drop_s=10)
    state.ingest(
        [
            entry(A, T0, samples_per_s=10.0, bytes_sent=100, bytes_received=50, raw_bytes=800),
            entry(B, T0, samples_per_s=5.0, bytes_sent=300, raw_bytes=1600),
        ],
        T0,
    )
    totals = state.snapshot(T0)["totals"]
    assert totals["samples_per_s"] == 15.0
    assert (totals["bytes_sent"], totals["bytes_received"], totals["bytes_moved"]) == (400, 50, 450)
    assert totals["compression_ratio"] == 6.0
    state.ingest([entry(A, T0 + 11, bytes_sent=150)], T0 + 11)  # B dropped: its bytes still count
    assert state.snapshot(T0 + 11)["totals"]["bytes_sent"] == 450
    state.ingest([entry(A, T0 + 12, bytes_sent=20)], T0 + 12)  # A restarted: counters reset
    assert state.snapshot(T0 + 12)["totals"]["bytes_sent"] == 300 + 150 + 20


def test_averaging_rounds_merged_over_peers_and_deduplicated() -> None:
    state = MonitorState("main")
    seen_by_a = AveragingSummary(round=7, group_size=3, contributors=2, failed=(C,), bytes_sent=10, at=T0)
    seen_by_b = AveragingSummary(round=7, group_size=3, contributors=2, failed=(C,), bytes_sent=20, at=T0)
    for t in (T0, T0 + 1):  # reading the same rounds twice counts them once
        state.ingest([entry(A, t, run="r", averaging=(seen_by_a,)), entry(B, t, run="r", averaging=(seen_by_b,))], t)
    (row,) = state.snapshot(T0 + 1)["averaging"]
    assert row["run"] == "r"
    assert row["round"] == 7
    assert (row["reporters"], row["contributors"], row["failed"], row["bytes_sent"]) == (2, 2, [C], 30)


def test_federated_rounds_newest_first() -> None:
    state = MonitorState("main")
    rounds = tuple(FederatedRoundSummary(round=r, outcome="completed", selected=4, contributors=4) for r in range(3))
    state.ingest([entry(A, T0, role="coordinator", federated=rounds)], T0)
    state.ingest([entry(A, T0 + 1, role="coordinator", federated=rounds[1:])], T0 + 1)
    snapshot = state.snapshot(T0 + 1)
    assert [r["round"] for r in snapshot["federated"]] == [2, 1, 0]
    assert snapshot["federated"][0]["coordinator"] == A
    assert snapshot["federated_latest"] == {A: 2}


def test_malformed_entries_are_ignored_and_counted() -> None:
    state = MonitorState("main")
    bad = [
        SimpleNamespace(peer_id="../../etc", report=TelemetryReport(), timestamp=T0, expires_at=T0 + 9),
        SimpleNamespace(peer_id=B, report={"role": "trainer"}, timestamp=T0, expires_at=T0 + 9),
        SimpleNamespace(peer_id=C, report=TelemetryReport(), timestamp=math.nan, expires_at=T0 + 9),
        SimpleNamespace(peer_id=C),
        "not an entry",
    ]
    state.ingest([*bad, entry(A, T0)], T0)  # type: ignore[list-item]
    snapshot = json.loads(state.snapshot_json())
    assert [p["peer_id"] for p in snapshot["peers"]] == [A]
    assert snapshot["totals"]["rejected"] == len(bad)
    state.set_reader_rejections({"forged": 2})
    state.ingest([], T0 + 1)
    assert state.snapshot(T0 + 1)["rejected"]["forged"] == 2


def test_announced_peers_without_telemetry_get_a_row() -> None:
    state = MonitorState("main")
    info = SimpleNamespace(roles=("volunteer",), software_version="0.1", bandwidth_mbps=80.0, device=None)
    members = [SimpleNamespace(peer_id=p, info=info, last_seen=T0, expires_at=T0 + 20) for p in (A, B)]
    state.ingest_members(members, T0)
    state.ingest([entry(A, T0, role="trainer")], T0)
    listed = peers(state, T0)
    assert listed[A]["telemetry"]
    assert listed[A]["link_mbps"] == 80.0
    assert not listed[B]["telemetry"]
    assert listed[B]["role"] == "volunteer"


_SAMPLE = re.compile(r'^(swarmnet_[a-z_]+)(\{([a-z_]+="(\\.|[^"\\])*",?)*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$')


def test_prometheus_text_parses_line_by_line() -> None:
    state = MonitorState("main")
    state.ingest(simulated_entries(20, T0), T0)
    state.ingest([entry(A, T0 + 1, run='we"ird\\run\nname', samples_per_s=3.0)], T0 + 1)
    text = state.prometheus(T0 + 1)
    assert text == state.metrics_text().decode()
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"gauge", "counter"}
            assert name.startswith("swarmnet_")
            assert name not in typed, f"{name} typed twice"
            typed[name] = kind
        elif not line.startswith("# HELP "):
            match = _SAMPLE.match(line)
            assert match, f"unparseable line {line!r}"
            assert match.group(1) in typed, f"{match.group(1)} sampled before its # TYPE line"
    for name in ("swarmnet_peers", "swarmnet_peer_samples_per_second", "swarmnet_bytes_sent_total"):
        assert name in typed
    assert typed["swarmnet_bytes_sent_total"] == "counter"
    assert "swarmnet_federated_round{" in text
    assert 'run="we\\"ird\\\\run\\nname"' in text
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_200_peers_snapshot_is_fast() -> None:
    state = MonitorState("main")
    now = time.time()
    for tick in range(3):
        state.ingest(simulated_entries(200, now + tick, tick=tick), now + tick)
    started = time.perf_counter()
    snapshot = state.snapshot(now + 3)
    build = time.perf_counter() - started
    started = time.perf_counter()
    body = state.snapshot_json()
    cached = time.perf_counter() - started
    size = len(body) / 1e3
    print(f"200 peers: snapshot built in {build * 1e3:.1f} ms, cached body {size:.0f} kB in {cached * 1e6:.0f} us")
    assert len(snapshot["peers"]) == 200


@pytest.mark.parametrize(("stale_s", "drop_s"), [(0, 5), (10, 5)])
def test_impossible_timeouts_refused(stale_s: float, drop_s: float) -> None:
    with pytest.raises(ValueError, match="stale_s"):
        MonitorState("main", stale_s=stale_s, drop_s=drop_s)


def test_a_non_finite_number_that_slipped_through_shows_as_null() -> None:
    state = MonitorState("main")
    unvalidated = TelemetryReport.model_construct(samples_per_s=math.inf, loss=math.nan)  # skips pydantic's checks
    state.ingest([TelemetryEntry(A, unvalidated, T0, T0 + 9)], T0)
    (row,) = json.loads(state.snapshot_json())["peers"]
    assert row["loss"] is None
    assert row["samples_per_s"] is None
    assert "swarmnet_peer_loss{" not in state.metrics_text().decode()  # null: no sample
