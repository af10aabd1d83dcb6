"""What the monitor remembers beyond each peer's latest report: loss curves, averaging and federated rounds.

A report carries only its peer's last few loss points and rounds (see ``swarmnet.telemetry.record``);
these logs merge the reports of many peers over time into bounded histories. Each is deduplicated,
so reading the same report twice, or the same round from several peers, counts it once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from swarmnet.telemetry.record import AveragingSummary, FederatedRoundSummary, LossPoint

__all__ = ["AveragingLog", "FederatedLog", "LossCurves"]


@dataclass
class _StepLoss:
    """The losses peers of one run reported at one step."""

    total: float = 0.0
    count: int = 0
    low: float = math.inf
    high: float = -math.inf

    def add(self, loss: float) -> None:
        self.total += loss
        self.count += 1
        self.low = min(self.low, loss)
        self.high = max(self.high, loss)


@dataclass
class _Run:
    steps: dict[int, _StepLoss] = field(default_factory=dict)
    last_step: dict[str, int] = field(default_factory=dict)  # per peer: newest step already counted
    unit: str = "step"  # what the x values count: a trainer's "step", a federated coordinator's "round"


class LossCurves:
    """Per run, the mean, lowest and highest loss over its peers at each step.

    A peer's points count once each: only steps beyond the newest one already counted from that
    peer are added (reports list their points oldest first, and overlap from one report to the next).
    A run keeps its latest ``max_points`` steps.
    """

    def __init__(self, max_points: int = 1000) -> None:
        self.max_points = max_points
        self._runs: dict[str, _Run] = {}

    def add(self, run: str, peer_id: str, points: Iterable[LossPoint], unit: str = "step") -> None:
        """Merge a peer's recent loss points into its run's curve; ``unit`` names what its x values count."""
        curve = self._runs.setdefault(run, _Run())
        curve.unit = unit
        last = curve.last_step.get(peer_id, -1)
        for point in points:
            if point.step <= last or not math.isfinite(point.loss):
                continue
            curve.steps.setdefault(point.step, _StepLoss()).add(point.loss)
            last = point.step
        curve.last_step[peer_id] = last
        if len(curve.steps) > self.max_points * 5 // 4:  # trim in batches: a sort per point would be slow
            for step in sorted(curve.steps)[: len(curve.steps) - self.max_points]:
                del curve.steps[step]

    def forget_peer(self, peer_id: str) -> None:
        """Stop remembering which steps a departed peer reported (its points stay in the curve)."""
        for curve in self._runs.values():
            curve.last_step.pop(peer_id, None)

    def forget_run(self, run: str) -> None:
        """Drop a run's curve (it ended long enough ago)."""
        self._runs.pop(run, None)

    def runs(self) -> list[str]:
        """Runs with at least one point."""
        return sorted(run for run, curve in self._runs.items() if curve.steps)

    def to_json(self, run: str) -> dict[str, Any]:
        """The run's curve as parallel lists (uPlot's layout): steps, mean, min, max; and the x values' unit."""
        curve = self._runs.get(run)
        steps = sorted(curve.steps) if curve else []
        points = [curve.steps[s] for s in steps] if curve else []
        return {
            "unit": curve.unit if curve else "step",
            "steps": steps,
            "mean": [round(p.total / p.count, 6) for p in points],
            "min": [round(p.low, 6) for p in points],
            "max": [round(p.high, 6) for p in points],
        }


class AveragingLog:
    """Recent averaging rounds per run, merged over the peers that took part.

    Each peer's view of a round replaces its earlier view of the same round; the merged row sums
    bytes over peers and takes the largest group, contributor count and duration any peer saw.
    """

    def __init__(self, max_rounds: int = 50) -> None:
        self.max_rounds = max_rounds
        self._rounds: dict[tuple[str, int], dict[str, AveragingSummary]] = {}

    def add(self, run: str, peer_id: str, summaries: Iterable[AveragingSummary]) -> None:
        """Record a peer's recent rounds."""
        for summary in summaries:
            self._rounds.setdefault((run, summary.round), {})[peer_id] = summary
        if len(self._rounds) > self.max_rounds:
            newest = sorted(self._rounds, key=self._ended_at)[-self.max_rounds :]
            self._rounds = {key: self._rounds[key] for key in newest}

    def _ended_at(self, key: tuple[str, int]) -> tuple[float, int]:
        return max(s.at for s in self._rounds[key].values()), key[1]

    def to_json(self) -> list[dict[str, Any]]:
        """Rounds newest first."""
        rows = []
        for key in sorted(self._rounds, key=self._ended_at, reverse=True):
            views = self._rounds[key].values()
            failed = sorted({peer for s in views for peer in s.failed})
            rows.append(
                {
                    "run": key[0],
                    "round": key[1],
                    "reporters": len(views),
                    "group_size": max(s.group_size for s in views),
                    "contributors": max(s.contributors for s in views),
                    "failed": failed,
                    "bytes_sent": sum(s.bytes_sent for s in views),
                    "bytes_received": sum(s.bytes_received for s in views),
                    "seconds": round(max(s.seconds for s in views), 3),
                    "codec": sorted({s.codec for s in views})[0],
                    "at": max(s.at for s in views),
                }
            )
        return rows


class FederatedLog:
    """Recent federated rounds, one row per (coordinator, round); a newer report of a round replaces it."""

    def __init__(self, max_rounds: int = 50) -> None:
        self.max_rounds = max_rounds
        self._rounds: dict[tuple[str, int], FederatedRoundSummary] = {}

    def add(self, coordinator: str, summaries: Iterable[FederatedRoundSummary]) -> None:
        """Record a coordinator's recent rounds."""
        for summary in summaries:
            self._rounds[(coordinator, summary.round)] = summary
        if len(self._rounds) > self.max_rounds:
            newest = sorted(self._rounds, key=lambda k: (k[1], k[0]))[-self.max_rounds :]
            self._rounds = {key: self._rounds[key] for key in newest}

    def to_json(self) -> list[dict[str, Any]]:
        """Rounds newest first."""
        keys = sorted(self._rounds, key=lambda k: (k[1], k[0]), reverse=True)
        return [{"coordinator": k[0], **self._rounds[k].model_dump(mode="json")} for k in keys]

    def latest_round(self) -> dict[str, int]:
        """Per coordinator, its newest round number."""
        latest: dict[str, int] = {}
        for coordinator, number in self._rounds:
            latest[coordinator] = max(latest.get(coordinator, -1), number)
        return latest
