"""How a trainer shows progress: a progress bar on a terminal, plain log lines otherwise, or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
from typing import Literal

from tqdm import tqdm

from swarmnet.diloco import Progress

__all__ = ["ProgressDisplay", "ProgressMode", "format_bytes"]

logger = logging.getLogger(__name__)

ProgressMode = Literal["auto", "bar", "log", "json", "none"]


def format_bytes(count: float) -> str:
    """``1234567`` -> ``"1.2 MB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class ProgressDisplay:
    """``update(progress)`` for every trainer event; ``close()`` at the end."""

    def __init__(self, mode: ProgressMode, total: int | None) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self._bar = tqdm(total=total, unit="step", dynamic_ncols=True) if mode == "bar" else None
        self._shown = 0

    def update(self, progress: Progress) -> None:
        """Show one event."""
        if self._bar is not None:
            self._bar.update(progress.step - self._bar.n)
            self._bar.set_postfix_str(
                f"loss {progress.loss:.3f} round {progress.rounds} sent {format_bytes(progress.bytes_sent)}",
                refresh=False,
            )
        elif self.mode == "json":
            if progress.event != "step" or progress.step - self._shown >= 10:
                self._shown = progress.step
                print(json.dumps(_as_dict(progress)), flush=True)
        elif self.mode == "log" and progress.event != "step":
            logger.info(_line(progress))

    def close(self) -> None:
        """Release the terminal line."""
        if self._bar is not None:
            self._bar.close()


def _as_dict(progress: Progress) -> dict[str, object]:
    last = progress.last
    return {
        "event": progress.event, "step": progress.step, "rounds": progress.rounds, "loss": round(progress.loss, 4),
        "bytes_sent": progress.bytes_sent, "val_loss": progress.val_loss,
        "group": len(last.contributors) if last is not None else None,
    }  # fmt: skip


def _line(progress: Progress) -> str:
    sent = format_bytes(progress.bytes_sent)
    text = f"step {progress.step} round {progress.rounds} loss {progress.loss:.3f} sent {sent}"
    if progress.last is not None:
        text += f" (group of {len(progress.last.contributors)}, {progress.last.seconds:.2f}s)"
    if progress.val_loss is not None:
        text += f" val {progress.val_loss:.3f}"
    return f"{progress.event}: {text}"
