"""The monitor's ``/metrics`` page: the ``/api/swarm`` snapshot in Prometheus' text exposition format.

Every metric name starts with ``swarmnet_``; each family has one ``# HELP`` and one ``# TYPE`` line
before its samples. Label values are escaped as the format requires (backslash, quote, newline),
so a peer's run name cannot break the page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["escape_label", "render_metrics"]

Sample = tuple[dict[str, str], float | int | None]


def escape_label(value: str) -> str:
    """A label value escaped for the text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP swarmnet_{name} {help_text}", f"# TYPE swarmnet_{name} {kind}"]
    for labels, value in samples:
        if value is None:
            continue
        label_text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        selector = f"{{{label_text}}}" if labels else ""
        lines.append(f"swarmnet_{name}{selector} {_format_value(value)}")
    return lines


def render_metrics(snapshot: dict[str, Any]) -> str:
    """The text format of a ``MonitorState`` snapshot."""
    totals, peers, runs = snapshot["totals"], snapshot["peers"], snapshot["runs"]
    lines: list[str] = []

    def gauge(name: str, help_text: str, samples: Iterable[Sample]) -> None:
        lines.extend(_family(name, "gauge", help_text, samples))

    def counter(name: str, help_text: str, samples: Iterable[Sample]) -> None:
        lines.extend(_family(name, "counter", help_text, samples))

    gauge("peers", "Peers the monitor lists.", [({}, totals["peers"])])
    gauge("peers_stale", "Listed peers with no new report for a while.", [({}, totals["stale"])])
    gauge("samples_per_second", "Training throughput summed over live peers.", [({}, totals["samples_per_s"])])
    counter("bytes_sent_total", "Bytes sent by all peers, departed ones included.", [({}, totals["bytes_sent"])])
    counter("bytes_received_total", "Bytes received by all peers.", [({}, totals["bytes_received"])])
    counter(
        "raw_bytes_total", "What the sent payloads would have been uncompressed (fp32).", [({}, totals["raw_bytes"])]
    )
    gauge("compression_ratio", "raw_bytes_total / bytes_sent_total.", [({}, totals["compression_ratio"])])
    counter(
        "telemetry_rejected_total",
        "Telemetry records ignored, by reason.",
        [({"reason": reason}, count) for reason, count in sorted(snapshot["rejected"].items())],
    )

    def per_peer(key: str) -> list[Sample]:
        return [({"peer_id": p["peer_id"], "role": p["role"], "run": p["run"]}, p[key]) for p in peers]

    gauge("peer_samples_per_second", "A peer's training throughput.", per_peer("samples_per_s"))
    gauge("peer_loss", "A peer's latest training loss.", per_peer("loss"))
    gauge("peer_step", "A peer's training step.", per_peer("step"))
    gauge("peer_link_mbps", "A peer's measured or configured upload link, Mbit/s.", per_peer("link_mbps"))
    counter("peer_bytes_sent_total", "Bytes a peer has sent since it started.", per_peer("bytes_sent"))
    gauge("peer_last_seen_seconds", "Seconds since a peer's newest report arrived.", per_peer("age_s"))
    gauge(
        "peer_stale",
        "1 when a peer has sent no new report for a while.",
        [({"peer_id": p["peer_id"]}, int(p["status"] == "stale")) for p in peers],
    )

    gauge("runs_active", "Runs with at least one live peer.", [({}, totals["runs_active"])])
    gauge("run_peers", "Peers reporting a run.", [({"run": r["run"]}, r["peers"]) for r in runs])
    gauge(
        "run_live_peers",
        "A run's live peers (0: the run is idle or ended).",
        [({"run": r["run"]}, r["live_peers"]) for r in runs],
    )
    gauge("run_step", "The newest step any peer of a run reported.", [({"run": r["run"]}, r["step"]) for r in runs])
    gauge("run_loss", "Mean latest loss over a run's live peers.", [({"run": r["run"]}, r["loss"]) for r in runs])
    gauge(
        "averaging_round",
        "The newest averaging round a run's peers reported.",
        [({"run": r["run"]}, r["round"]) for r in runs],
    )
    gauge(
        "federated_round",
        "A federated coordinator's newest round.",
        [({"coordinator": c}, n) for c, n in sorted(snapshot["federated_latest"].items())],
    )
    outcomes: dict[str, int] = {}
    for row in snapshot["federated"]:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    gauge(
        "federated_recent_rounds",
        "Recent federated rounds the monitor remembers, by outcome.",
        [({"outcome": o}, n) for o, n in sorted(outcomes.items())],
    )
    return "\n".join(lines) + "\n"
