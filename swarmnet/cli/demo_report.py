"""The demo's closing summary: losses, identical global state, bytes vs per-step all-reduce, a text sample."""

from __future__ import annotations

from typing import Any

from swarmnet.units import format_bytes

__all__ = ["print_summary"]


def print_summary(summaries: list[dict[str, Any]], seconds: float) -> None:
    """Print the summary of the peers that reported one."""
    if not summaries:
        print("no peer wrote a summary (see the logs)")
        return
    print(
        f"\n=== DiLoCo demo: {len(summaries)} peers, {seconds / 60:.1f} min, {summaries[0]['parameters']:,} parameters"
    )
    header = f"{'peer':<14}{'steps':>7}{'syncs':>7}{'val before':>12}{'val after':>11}"
    print(header + f"{'sent':>11}{'all-reduce':>12}{'ratio':>8}")
    for s in summaries:
        ratio = s["allreduce_bytes"] / max(1, s["bytes_sent"])
        print(
            f"{s['peer_id'][:12]:<14}{s['steps']:>7}{s['rounds']:>7}{s['val_loss_before']:>12.3f}"
            f"{_loss(s['val_loss_after']):>11}{format_bytes(s['bytes_sent']):>11}{format_bytes(s['allreduce_bytes']):>12}"
            f"{ratio:>7.0f}x"
        )
    digests = {s["digest"] for s in summaries}
    same = "yes" if len(digests) == 1 else f"no ({len(digests)} different states)"
    print(f"all peers hold identical global parameters and outer momentum: {same}")
    print("'all-reduce' = what per-step fp32 data-parallel all-reduce in the same group would have sent")
    if summaries[0]["sample"]:
        print(f"\ngenerated text (global model, seeded):\n{summaries[0]['sample']}\n")


def _loss(value: float | None) -> str:
    """A validation loss, or '-' for a peer stopped before its closing evaluation."""
    return "-" if value is None else f"{value:.3f}"
