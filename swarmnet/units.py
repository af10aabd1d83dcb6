"""Human-readable quantities for logs, progress lines and summaries."""

from __future__ import annotations

__all__ = ["format_bytes"]


def format_bytes(count: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, up to GB)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"
