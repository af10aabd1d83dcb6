"""Report pieces built from statistics, and the size bound of the largest possible report."""

from __future__ import annotations

import itertools
import math

import pytest

from swarmnet.averaging.outcome import Outcome
from swarmnet.identity import Identity
from swarmnet.membership import DeviceInfo
from swarmnet.records import RecordPolicy, RecordVerifier, sign_record
from swarmnet.telemetry import (
    AveragingSummary,
    FederatedRoundSummary,
    LossHistory,
    LossPoint,
    TelemetryConfig,
    TelemetryReport,
    Throughput,
    averaging_summary,
    device_info,
    fp32_allreduce_bytes,
)


def _longest(field: str) -> int:
    limit = TelemetryReport.model_fields[field].metadata[0].max_length
    assert isinstance(limit, int)
    return limit


def largest_report() -> TelemetryReport:
    """Every list at its max_length, every bounded string at its limit, numbers with many digits."""
    peer_ids = [Identity.generate().peer_id for _ in range(16)]
    big, odd = 2**62, 1 / 3 * 1e300
    averaging = AveragingSummary(
        round=big, group_size=big, contributors=big, failed=tuple(peer_ids), bytes_sent=big, bytes_received=big,
        seconds=odd, codec="c" * 64, at=odd,
    )  # fmt: skip
    federated = FederatedRoundSummary(
        round=big, outcome="f" * 16, reason="r" * 256, selected=big, contributors=big, uplink_bytes=big,
        seconds=odd, train_loss=-odd, secure_aggregation=True, epsilon=odd,
    )  # fmt: skip
    return TelemetryReport(
        role="x" * 32, run="y" * 128, state="z" * 32, step=big, round=big, samples_per_s=odd, loss=-odd,
        losses=tuple(LossPoint(step=big, loss=-odd) for _ in range(_longest("losses"))),
        averaging=(averaging,) * _longest("averaging"), federated=(federated,) * _longest("federated"),
        bytes_sent=big, bytes_received=big, raw_bytes=big, link_mbps=odd,
        device=DeviceInfo(kind="other", name="n" * 256, memory_bytes=big, cpu_count=big, host_memory_bytes=big),
        uptime_s=odd, software_version="v" * 64,
    )  # fmt: skip


def test_the_largest_possible_report_fits_one_record() -> None:
    identity, config = Identity.generate(), TelemetryConfig(swarm="s" * 64)
    report = largest_report()
    now = 1_700_000_000.0
    value = sign_record(identity, report, key=config.key, subkey=identity.peer_id, timestamp=now, expires_at=now + 30)
    assert len(value) < RecordPolicy().max_bytes, f"{len(value)} bytes"
    record = RecordVerifier().verify(value, TelemetryReport, key=config.key, subkey=identity.peer_id, now=now)
    assert record.payload == report


def test_averaging_summary_condenses_an_outcome() -> None:
    outcome = Outcome(
        run="r-f0", round_id=40, succeeded=True, members=("a", "b", "c"), contributors=("a", "b"),
        failed={"c": "timeout"}, rejected={"d": "bad payload"}, bytes_sent={"b": 100, "c": 50},
        bytes_received={"b": 70}, phase_seconds={"matchmaking": 1.0, "reduce_scatter": 0.5}, codec="int4",
    )  # fmt: skip
    summary = averaging_summary(outcome, at=123.0)
    assert summary == AveragingSummary(
        round=40, group_size=3, contributors=2, failed=("c", "d"), bytes_sent=150, bytes_received=70, seconds=1.5,
        codec="int4", at=123.0,
    )  # fmt: skip


def test_averaging_summary_keeps_at_most_16_dropped_peers_and_a_sane_duration() -> None:
    outcome = Outcome(
        run="r", round_id=1, succeeded=False, failed={f"p{i:02d}": "x" for i in range(30)},
        phase_seconds={"matchmaking": math.nan},
    )  # fmt: skip
    summary = averaging_summary(outcome)
    assert summary.failed == tuple(f"p{i:02d}" for i in range(16))
    assert summary.seconds == 0.0


def test_fp32_allreduce_bytes_is_the_dense_butterfly_volume() -> None:
    assert fp32_allreduce_bytes(1, 1000) == 0
    assert fp32_allreduce_bytes(2, 1000) == 4000  # half to reduce, half back: 2 x (1/2) x 4 B x 1000
    assert fp32_allreduce_bytes(4, 1000) == 6000


def test_loss_history_stays_bounded_spread_and_ends_at_the_newest_point() -> None:
    history = LossHistory()
    assert history.points() == ()
    for step in range(1, 10_001):
        history.add(step, 10.0 / step)
        points = history.points()
        assert len(points) <= 48
    steps = [p.step for p in points]
    assert steps[0] == 1
    assert steps[-1] == 10_000
    assert steps == sorted(steps)
    assert len(steps) >= 24
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert len(gaps) <= 2  # evenly spread; only the newest point may come sooner


def test_loss_history_ignores_non_finite_losses() -> None:
    history = LossHistory(max_points=4)
    history.add(1, 2.0)
    history.add(2, math.nan)
    history.add(3, math.inf)
    assert history.points() == (LossPoint(step=1, loss=2.0),)
    with pytest.raises(ValueError, match="max_points"):
        LossHistory(max_points=49)


def test_throughput_is_samples_per_second_over_a_window() -> None:
    meter = Throughput(window=10.0)
    assert meter.rate() is None
    meter.add(0.0, 0)
    assert meter.rate() is None
    for t in range(1, 101):
        meter.add(float(t), 8 * t if t <= 50 else 400 + 2 * (t - 50))
    rate = meter.rate()
    assert rate == pytest.approx(2.0, rel=0.01)  # the old, faster phase has left the window


def test_device_info_describes_this_machine() -> None:
    device = device_info()
    assert device.kind in ("cpu", "cuda", "mps", "other")
    assert device.cpu_count >= 1
    assert device.host_memory_bytes > 0
