"""A simulated swarm's telemetry: ``n`` plausible peers' reports, no network, for the monitor's
benchmark and tests and for anyone testing a telemetry consumer.

The entries have the shape the reader returns (``TelemetryEntry``), so they go through the same
``MonitorState.ingest`` path as real ones: trainers of a few runs with loss curves and averaging
rounds, volunteers, and a federated coordinator with its per-round loss curve.
"""

from __future__ import annotations

import math
import random

import base58

from swarmnet.membership import DeviceInfo
from swarmnet.telemetry.reader import TelemetryEntry
from swarmnet.telemetry.record import AveragingSummary, FederatedRoundSummary, LossPoint, TelemetryReport

__all__ = ["FEDERATED_RUN", "simulated_entries", "simulated_peer_id"]

FEDERATED_RUN = "federated"  # the simulated coordinator's run: its loss curve has one point per round


def simulated_peer_id(index: int) -> str:
    """A base58 id that looks like a libp2p one and is unique per ``index``."""
    return "12D3KooW" + base58.b58encode(index.to_bytes(8, "big")).decode()


def simulated_entries(n: int, now: float, *, tick: int = 0, seed: int = 0, ttl: float = 30.0) -> list[TelemetryEntry]:
    """``n`` peers' reports as of ``now``; a larger ``tick`` advances their training by 10 steps each."""
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        peer_id = simulated_peer_id(i)
        if i == 0:
            report = _coordinator(tick)
        elif i % 5 == 4:
            report = TelemetryReport(role="volunteer", state="idle", uptime_s=60.0 + tick, link_mbps=100.0)
        else:
            report = _trainer(i, tick, rng)
        entries.append(TelemetryEntry(peer_id, report, now - rng.random(), now + ttl))
    return entries


def _trainer(i: int, tick: int, rng: random.Random) -> TelemetryReport:
    step = 100 + 10 * tick + i % 7
    losses = tuple(LossPoint(step=s, loss=_loss(s, rng)) for s in range(max(0, step - 47), step + 1))
    rounds = tuple(
        AveragingSummary(
            round=step // 20 - k,
            group_size=4,
            contributors=4 - (k == 1),
            failed=(simulated_peer_id(i + 1),) if k == 1 else (),
            bytes_sent=1_500_000,
            bytes_received=1_500_000,
            seconds=0.8,
            codec="int4",
            at=1_000_000.0 + step - 20 * k,
        )
        for k in range(3, -1, -1)
        if step // 20 - k >= 0
    )
    sent = 1_500_000 * (step // 20)
    return TelemetryReport(
        role="trainer",
        run=f"run-{i % 3}",
        state="training",
        step=step,
        round=step // 20,
        samples_per_s=40.0 + rng.random() * 20,
        loss=losses[-1].loss,
        losses=losses,
        averaging=rounds,
        bytes_sent=sent,
        bytes_received=sent,
        raw_bytes=sent * 8,
        link_mbps=50.0 + i % 4 * 100,
        device=DeviceInfo(kind="cpu", name="simulated", cpu_count=2),
        uptime_s=float(step),
    )


def _coordinator(tick: int) -> TelemetryReport:
    rounds = tuple(
        FederatedRoundSummary(
            round=r,
            outcome="failed" if r % 4 == 3 else "completed",
            reason="too few updates" if r % 4 == 3 else "",
            selected=8,
            contributors=5 if r % 4 == 3 else 8,
            uplink_bytes=400_000,
            seconds=2.5,
            train_loss=1.5 / (1 + r),
            secure_aggregation=True,
            epsilon=0.1 * r,
        )
        for r in range(max(0, tick - 9), tick + 1)
    )
    losses = tuple(LossPoint(step=r.round, loss=r.train_loss) for r in rounds if r.train_loss is not None)
    return TelemetryReport(
        role="coordinator",
        run=FEDERATED_RUN,
        state="serving",
        round=tick,
        loss=losses[-1].loss,
        losses=losses,  # one point per round, as ``swarmnet coordinator`` reports them
        federated=rounds,
        uptime_s=10.0 + tick,
    )


def _loss(step: int, rng: random.Random) -> float:
    return 1.5 + 4.0 * math.exp(-step / 300) + rng.random() * 0.05
