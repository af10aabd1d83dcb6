"""Where telemetry is wired: the peer's and the coordinator's flags and the reports they build."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from swarmnet.averaging.outcome import Outcome
from swarmnet.cli.common import ExitCode
from swarmnet.cli.coordinator import telemetry_from_args
from swarmnet.cli.main import build_parser, main
from swarmnet.cli.peer import config_from_args
from swarmnet.coordinator.history import RoundRecord
from swarmnet.coordinator.rounds import RoundEngine
from swarmnet.coordinator.telemetry import coordinator_report, federated_summary
from swarmnet.diloco import Progress
from swarmnet.identity import Identity
from swarmnet.membership import DeviceInfo
from swarmnet.peers.telemetry import PeerTelemetry
from swarmnet.telemetry import FederatedRoundSummary

MADDR = f"/ip4/127.0.0.1/tcp/31337/p2p/{Identity.generate().peer_id}"


def test_peer_publishes_telemetry_every_5_s_by_default_in_its_swarm() -> None:
    config = config_from_args(build_parser().parse_args(["peer", "--swarm", "blue"]))
    assert config.telemetry is not None
    assert (config.telemetry.swarm, config.telemetry.period) == ("blue", 5.0)
    config.validate()


def test_telemetry_period_flag_sets_the_period_and_0_disables_it() -> None:
    slow = config_from_args(build_parser().parse_args(["peer", "--telemetry-period", "20"])).telemetry
    assert slow is not None
    assert slow.period == 20.0
    assert slow.ttl >= 2 * slow.period
    assert config_from_args(build_parser().parse_args(["peer", "--telemetry-period", "0"])).telemetry is None


def test_a_negative_telemetry_period_exits_with_the_usage_code() -> None:
    assert main(["peer", "--telemetry-period", "-1"]) == ExitCode.USAGE


def test_coordinator_publishes_only_with_initial_peers(tmp_path: Path) -> None:
    base = ["coordinator", "--state-dir", str(tmp_path)]
    assert telemetry_from_args(build_parser().parse_args(base)) is None
    found = telemetry_from_args(build_parser().parse_args([*base, "--initial-peers", MADDR, "--swarm", "fed"]))
    assert found is not None
    network, telemetry = found
    assert network.client_mode
    assert network.initial_peers == (MADDR,)
    assert (telemetry.swarm, telemetry.period) == ("fed", 5.0)
    disabled = [*base, "--initial-peers", MADDR, "--telemetry-period", "0"]
    assert telemetry_from_args(build_parser().parse_args(disabled)) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def progress(step: int, event: str = "step", **fields: object) -> Progress:
    defaults: dict[str, object] = {"rounds": 0, "loss": 2.0, "bytes_sent": 0, "bytes_received": 0}
    return Progress(step=step, event=event, **{**defaults, **fields})  # type: ignore[arg-type]


def test_peer_telemetry_reports_a_trainers_progress() -> None:
    clock = FakeClock()
    telemetry = PeerTelemetry(role="trainer", run="kjv", device=DeviceInfo(name="box"), clock=clock, started_at=990.0)
    first = telemetry.report()
    assert (first.role, first.run, first.state, first.step, first.loss, first.samples_per_s) == (
        "trainer", "kjv", "starting", 0, None, None,
    )  # fmt: skip
    telemetry.samples_per_step, telemetry.link_mbps = 8, 95.5
    for step in range(1, 11):
        clock.now += 0.5
        telemetry.observe(progress(step, loss=3.0 - step / 10))
    outcome = Outcome(run="kjv-f0", round_id=10, succeeded=True, members=("a", "b"), contributors=("a", "b"),
                      bytes_sent={"b": 500}, codec="int4")  # fmt: skip
    telemetry.observe(progress(10, "sync", rounds=1, bytes_sent=500, raw_bytes=4000, last=outcome, syncing=False))
    report = telemetry.report()
    assert (report.state, report.step, report.round) == ("training", 10, 1)
    assert report.loss == pytest.approx(2.0)
    assert report.samples_per_s == pytest.approx(16.0)  # 8 samples every 0.5 s
    assert [p.step for p in report.losses] == list(range(1, 11))
    assert [(a.round, a.group_size, a.codec) for a in report.averaging] == [(10, 2, "int4")]
    assert (report.bytes_sent, report.raw_bytes, report.link_mbps) == (500, 4000, 95.5)
    assert report.uptime_s == pytest.approx(15.0)
    assert report.device.name == "box"
    telemetry.observe(progress(11, loss=math.nan, syncing=True))
    assert telemetry.report().state == "syncing"
    assert telemetry.report().loss is None


def test_a_volunteer_reports_its_roles_and_no_training_figures() -> None:
    telemetry = PeerTelemetry(role="volunteer,gpu", run="", device=DeviceInfo(), clock=FakeClock(), started_at=0)
    report = telemetry.report()
    assert (report.role, report.state, report.samples_per_s) == ("volunteer,gpu", "online", None)


def test_federated_summary_turns_nan_loss_and_infinite_epsilon_into_none() -> None:
    record = RoundRecord(round=3, outcome="completed", selected=("a", "b", "c"), contributors=("a", "b"),
                         uplink_bytes=900, seconds=2.5, epsilon=math.inf, secure_aggregation=True)  # fmt: skip
    assert federated_summary(record) == FederatedRoundSummary(
        round=3, outcome="completed", selected=3, contributors=2, uplink_bytes=900, seconds=2.5, train_loss=None,
        secure_aggregation=True, epsilon=None,
    )  # fmt: skip
    assert federated_summary(RoundRecord(round=1, outcome="failed", train_loss=0.5, epsilon=1.2)).epsilon == 1.2


def test_coordinator_report_carries_phase_round_and_the_last_10_rounds() -> None:
    history = tuple(
        RoundRecord(
            round=r,
            outcome="completed" if r % 3 else "failed",
            train_loss=1 / r if r % 3 else math.nan,
            uplink_bytes=100,
        )
        for r in range(1, 15)
    )
    engine = SimpleNamespace(
        state=SimpleNamespace(history=history, next_round=15), round=SimpleNamespace(number=15), phase="collect",
        config=SimpleNamespace(run="fed-run"), done=lambda: False,
    )  # fmt: skip
    report = coordinator_report(cast(RoundEngine, engine), device=DeviceInfo(), uptime_s=60.0)
    assert (report.role, report.run, report.state, report.round) == ("coordinator", "fed-run", "collect", 15)
    assert [f.round for f in report.federated] == list(range(5, 15))
    assert report.loss == pytest.approx(1 / 14)
    assert [p.step for p in report.losses] == [r for r in range(1, 15) if r % 3]
    assert report.bytes_received == 1400
    engine.round, engine.phase = None, "waiting"
    assert coordinator_report(cast(RoundEngine, engine), device=DeviceInfo(), uptime_s=61.0).round == 14
