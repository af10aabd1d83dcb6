"""``MonitorState``: what the monitor knows about the swarm, built only from what peers published.

Pure: no I/O and no clock of its own; the poller feeds it verified telemetry entries (and,
optionally, membership announcements, so peers that publish no telemetry yet still get a row)
together with the time. Every ``ingest`` rebuilds the ``/api/swarm`` JSON and the ``/metrics``
text once and caches them as bytes, so HTTP threads only copy bytes, however many peers there are.

Peers go stale (greyed on the page) when no newer report has arrived for ``stale_s`` seconds of
the monitor's own clock (so a publisher's skewed clock cannot hide or revive it), and are dropped
after ``drop_s``, when their record expires, or when they report ``state == "left"``.

A run is *active* while at least one of its peers is live, *idle* while its peers are all stale,
and *ended* once none is listed; an ended run's loss curve stays on the page for ``ended_keep_s``
after its last live peer, then is forgotten.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from swarmnet.coordinator.monitor.history import AveragingLog, FederatedLog, LossCurves
from swarmnet.coordinator.monitor.prometheus import render_metrics
from swarmnet.telemetry.record import TelemetryReport

__all__ = ["MemberLike", "MonitorState", "TelemetryEntryLike"]

logger = logging.getLogger(__name__)

_PEER_ID = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{1,128}$")  # base58, as libp2p peer ids are written


class TelemetryEntryLike(Protocol):
    """The shape of ``swarmnet.telemetry.reader.TelemetryEntry``: one verified report."""

    @property
    def peer_id(self) -> str: ...
    @property
    def report(self) -> TelemetryReport: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def expires_at(self) -> float: ...


class MemberLike(Protocol):
    """The shape of ``swarmnet.membership.Member`` the monitor reads."""

    @property
    def peer_id(self) -> str: ...
    @property
    def info(self) -> Any: ...
    @property
    def last_seen(self) -> float: ...
    @property
    def expires_at(self) -> float: ...


@dataclass
class _Peer:
    report: TelemetryReport
    last_seen: float  # timestamp of its newest report (the publisher's clock)
    expires_at: float
    first_seen: float  # monitor clock, when it was first listed
    seen_at: float  # monitor clock, when its newest report first arrived


class MonitorState:
    """The monitor's view of the swarm. Thread-safe: one writer (the poller), many HTTP readers."""

    def __init__(
        self, swarm: str = "main", *, stale_s: float = 15.0, drop_s: float = 60.0, ended_keep_s: float = 3600.0
    ) -> None:
        if not 0 < stale_s <= drop_s:
            raise ValueError(f"need 0 < stale_s ({stale_s}) <= drop_s ({drop_s})")
        if not ended_keep_s > 0:
            raise ValueError(f"need ended_keep_s ({ended_keep_s}) > 0")
        self.swarm, self.stale_s, self.drop_s, self.ended_keep_s = swarm, stale_s, drop_s, ended_keep_s
        self._run_live: dict[str, float] = {}  # per run: when it last had a live peer (monitor clock)
        self._peers: dict[str, _Peer] = {}
        self._members: dict[str, MemberLike] = {}
        self._member_first_seen: dict[str, float] = {}
        self._losses, self._averaging, self._federated = LossCurves(), AveragingLog(), FederatedLog()
        self._departed = {"bytes_sent": 0, "bytes_received": 0, "raw_bytes": 0}  # keeps totals monotone
        self._rejected: dict[str, int] = {}
        self._reader_rejected: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._last_ingest: float | None = None
        self._json = b""
        self._metrics = b""
        self._rebuild(0.0)

    # -- writing ---------------------------------------------------------------------------------

    def ingest(self, entries: Iterable[TelemetryEntryLike], now: float) -> None:
        """Merge one read of the swarm's telemetry, expire old peers, and rebuild the cached views."""
        with self._lock:
            for entry in entries:
                try:
                    self._ingest_one(entry, now)
                except Exception as e:  # a malformed entry is the publisher's fault: skip it, keep the rest
                    self._reject(getattr(entry, "peer_id", "?"), f"malformed: {type(e).__name__}", str(e))
            self._expire(now)
            self._track_runs(now)
            self._last_ingest = now
            self._rebuild(now)

    def ingest_members(self, members: Iterable[MemberLike], now: float) -> None:
        """Replace the list of announced peers (rows for peers without telemetry); call before ``ingest``."""
        with self._lock:
            current: dict[str, MemberLike] = {}
            for member in members:
                peer_id = getattr(member, "peer_id", None)
                if isinstance(peer_id, str) and _PEER_ID.match(peer_id):
                    current[peer_id] = member
                    self._member_first_seen.setdefault(peer_id, now)
            self._members = current
            for gone in self._member_first_seen.keys() - current.keys():
                del self._member_first_seen[gone]

    def set_reader_rejections(self, counts: dict[str, int]) -> None:
        """The reader's counters of records it refused (forged, expired, oversized, ...), by reason."""
        with self._lock:
            self._reader_rejected = {str(k): int(v) for k, v in counts.items()}

    def _ingest_one(self, entry: TelemetryEntryLike, now: float) -> None:
        peer_id, report = entry.peer_id, entry.report
        timestamp, expires_at = float(entry.timestamp), float(entry.expires_at)
        if not isinstance(peer_id, str) or not _PEER_ID.match(peer_id):
            raise ValueError(f"bad peer id {peer_id!r}")
        if not isinstance(report, TelemetryReport):
            raise TypeError(f"report is a {type(report).__name__}, not a TelemetryReport")
        if not (math.isfinite(timestamp) and math.isfinite(expires_at)):
            raise ValueError("non-finite timestamp")
        old = self._peers.get(peer_id)
        if old is not None and timestamp <= old.last_seen:
            return  # the same report read again, or an older one
        if report.state == "left":
            self._drop(peer_id)
            return
        if old is not None:
            self._carry_counters(old.report, report)
        self._peers[peer_id] = _Peer(report, timestamp, expires_at, old.first_seen if old else now, now)
        unit = "round" if report.role == "coordinator" else "step"  # a coordinator reports a loss per round
        self._losses.add(report.run, peer_id, report.losses, unit)
        self._averaging.add(report.run, peer_id, report.averaging)
        self._federated.add(peer_id, report.federated)

    def _carry_counters(self, old: TelemetryReport, new: TelemetryReport) -> None:
        """A counter that went down means the peer restarted: bank what it had sent before."""
        for name in self._departed:
            if getattr(new, name) < getattr(old, name):
                self._departed[name] += getattr(old, name)

    def _expire(self, now: float) -> None:
        for peer_id, peer in list(self._peers.items()):
            if now - peer.seen_at > self.drop_s or now > peer.expires_at:
                self._drop(peer_id)

    def _track_runs(self, now: float) -> None:
        """Note which runs have a live peer; forget the curves of runs ended more than ``ended_keep_s`` ago."""
        listed = {peer.report.run for peer in self._peers.values() if peer.report.run}
        for peer in self._peers.values():
            if peer.report.run and now - peer.seen_at <= self.stale_s:
                self._run_live[peer.report.run] = now
        for run, last_live in list(self._run_live.items()):
            if run not in listed and now - last_live > self.ended_keep_s:
                del self._run_live[run]
                self._losses.forget_run(run)

    def _drop(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            for name in self._departed:
                self._departed[name] += getattr(peer.report, name)
        self._losses.forget_peer(peer_id)

    def _reject(self, peer_id: str, reason: str, detail: str) -> None:
        self._rejected[reason] = self._rejected.get(reason, 0) + 1
        level = logging.DEBUG if (peer_id, reason) in self._warned else logging.WARNING
        self._warned.add((peer_id, reason))
        logger.log(level, "telemetry from %s ignored (%s): %s", peer_id, reason, detail[:300])

    # -- reading ---------------------------------------------------------------------------------

    def snapshot_json(self) -> bytes:
        """The cached ``/api/swarm`` body, as of the last ingest."""
        return self._json

    def metrics_text(self) -> bytes:
        """The cached ``/metrics`` body (Prometheus text format), as of the last ingest."""
        return self._metrics

    def last_ingest(self) -> float | None:
        """When telemetry was last ingested (the clock passed to ``ingest``), or None."""
        return self._last_ingest

    def snapshot(self, now: float) -> dict[str, Any]:
        """The ``/api/swarm`` object at ``now`` (built afresh; the server serves the cached bytes)."""
        with self._lock:
            return self._build(now)

    def prometheus(self, now: float) -> str:
        """The ``/metrics`` text at ``now``."""
        return render_metrics(self.snapshot(now))

    def _rebuild(self, now: float) -> None:
        snapshot = self._build(now)
        try:
            self._json = json.dumps(snapshot, separators=(",", ":"), allow_nan=False).encode()
        except ValueError:  # a non-finite number got through: JSON has no NaN, so show it as null
            snapshot = _finite(snapshot)
            self._json = json.dumps(snapshot, separators=(",", ":"), allow_nan=False).encode()
        self._metrics = render_metrics(snapshot).encode()

    def _build(self, now: float) -> dict[str, Any]:
        rows = [self._peer_row(peer_id, peer, now) for peer_id, peer in self._peers.items()]
        for peer_id, member in self._members.items():
            if peer_id not in self._peers:
                try:
                    rows.append(self._member_row(member, now))
                except (TypeError, ValueError) as e:
                    self._reject(peer_id, f"malformed announcement: {type(e).__name__}", str(e))
        rows.sort(key=lambda r: (r["status"] != "live", r["role"], r["peer_id"]))
        rejected = dict(self._reader_rejected)
        for reason, count in self._rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
        runs = self._runs(rows)
        return {
            "swarm": self.swarm,
            "time": now,
            "stale_after_s": self.stale_s,
            "drop_after_s": self.drop_s,
            "totals": self._totals(rows, runs, rejected),
            "peers": rows,
            "runs": runs,
            "averaging": self._averaging.to_json(),
            "federated": self._federated.to_json(),
            "federated_latest": self._federated.latest_round(),
            "rejected": rejected,
        }

    def _peer_row(self, peer_id: str, peer: _Peer, now: float) -> dict[str, Any]:
        r = peer.report
        member = self._members.get(peer_id)
        link = r.link_mbps if r.link_mbps is not None else _member_link(member)
        return {
            "peer_id": peer_id,
            "role": r.role,
            "run": r.run,
            "state": r.state,
            "status": "stale" if now - peer.seen_at > self.stale_s else "live",
            "telemetry": True,
            "step": r.step,
            "round": r.round,
            "samples_per_s": r.samples_per_s,
            "loss": r.loss,
            "link_mbps": link,
            "bytes_sent": r.bytes_sent,
            "bytes_received": r.bytes_received,
            "raw_bytes": r.raw_bytes,
            "compression_ratio": _ratio(r.raw_bytes, r.bytes_sent),
            "device": {"kind": r.device.kind, "name": r.device.name},
            "uptime_s": r.uptime_s,
            "version": r.software_version,
            "first_seen": peer.first_seen,
            "last_seen": peer.last_seen,
            "age_s": round(max(0.0, now - peer.seen_at), 3),
            "expires_at": peer.expires_at,
        }

    def _member_row(self, member: MemberLike, now: float) -> dict[str, Any]:
        info = member.info
        roles = tuple(getattr(info, "roles", ()) or ("peer",))
        device = getattr(info, "device", None)
        return {
            "peer_id": member.peer_id,
            "role": str(roles[0]),
            "run": "",
            "state": str(getattr(info, "state", "online")),
            "status": "live",
            "telemetry": False,
            "step": None,
            "round": None,
            "samples_per_s": None,
            "loss": None,
            "link_mbps": _member_link(member),
            "bytes_sent": 0,
            "bytes_received": 0,
            "raw_bytes": 0,
            "compression_ratio": None,
            "device": {"kind": str(getattr(device, "kind", "?")), "name": str(getattr(device, "name", "?"))},
            "uptime_s": None,
            "version": str(getattr(info, "software_version", "?")),
            "first_seen": self._member_first_seen.get(member.peer_id, now),
            "last_seen": float(member.last_seen),
            "age_s": None,
            "expires_at": float(member.expires_at),
        }

    def _totals(
        self, rows: list[dict[str, Any]], runs: list[dict[str, Any]], rejected: dict[str, int]
    ) -> dict[str, Any]:
        live = [r for r in rows if r["status"] == "live"]
        sums = {name: self._departed[name] + sum(r[name] for r in rows) for name in self._departed}
        return {
            "peers": len(rows),
            "live": len(live),
            "stale": len(rows) - len(live),
            "samples_per_s": round(sum(r["samples_per_s"] or 0.0 for r in live), 3),
            **sums,
            "bytes_moved": sums["bytes_sent"] + sums["bytes_received"],
            "compression_ratio": _ratio(sums["raw_bytes"], sums["bytes_sent"]),
            "runs": len(runs),  # every run on the page: active, idle or ended
            "runs_active": sum(1 for r in runs if r["status"] == "active"),
            "rejected": sum(rejected.values()),
        }

    def _runs(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = sorted({r["run"] for r in rows if r["run"]} | set(self._losses.runs()))
        runs = []
        for name in names:
            members = [r for r in rows if r["run"] == name]
            live = [r for r in members if r["status"] == "live"]
            losses = [r["loss"] for r in live if r["loss"] is not None]
            runs.append(
                {
                    "run": name,
                    "status": "active" if live else "idle" if members else "ended",
                    "peers": len(members),
                    "live_peers": len(live),
                    "last_live": self._run_live.get(name),
                    "step": max((r["step"] for r in members), default=None),
                    "round": max((r["round"] for r in members), default=None),
                    "samples_per_s": round(
                        sum(r["samples_per_s"] or 0.0 for r in members if r["status"] == "live"), 3
                    ),
                    "loss": round(sum(losses) / len(losses), 6) if losses else None,
                    "curve": self._losses.to_json(name),
                }
            )
        return runs


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _ratio(raw: int, sent: int) -> float | None:
    return round(raw / sent, 3) if sent > 0 and raw > 0 else None


def _member_link(member: MemberLike | None) -> float | None:
    value = getattr(getattr(member, "info", None), "bandwidth_mbps", None)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
