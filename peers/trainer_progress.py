"""How a trainer shows progress: a progress bar on a terminal, plain log lines otherwise, or JSON lines.

While the bar is shown, log records meant for the same terminal are written above it: the bar line
is cleared, the record written on its own line, and the bar redrawn (otherwise a record would be
glued to the end of the bar). A terminal that reports 0 columns (some CI consoles, emacs) gets log
lines instead of a bar, since a bar cannot be drawn there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from typing import Literal, TextIO

from tqdm import tqdm

from swarmnet.diloco import Progress
from swarmnet.units import format_bytes

__all__ = ["ProgressDisplay", "ProgressMode"]

logger = logging.getLogger(__name__)

ProgressMode = Literal["auto", "bar", "log", "json", "none"]


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to; 0 where the terminal reports none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no file descriptor, or not a terminal
        return shutil.get_terminal_size(fallback=(0, 0)).columns


class ProgressDisplay:
    """``update(progress)`` for every trainer event; ``close()`` at the end.

    ``stream`` is where the bar is drawn (stderr by default, where the log goes too).
    """

    def __init__(self, mode: ProgressMode, total: int | None, *, stream: TextIO | None = None) -> None:
        stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if stream.isatty() else "log"
        if mode == "bar" and stream.isatty() and terminal_columns(stream) <= 0:
            mode = "log"  # a terminal with no width has nowhere to draw a bar: say it in log lines
        self.mode = mode
        self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=stream) if mode == "bar" else None
        self._redirected = _log_above(stream) if self._bar is not None else []
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
        """Release the terminal line and give the log its handlers back. Safe to call twice."""
        _restore(self._redirected)
        self._redirected = []
        if self._bar is not None:
            self._bar.close()


class _AboveBar(logging.Handler):
    """Wraps a console handler: clears the bar line, lets the handler write the record, redraws the bar."""

    def __init__(self, inner: logging.StreamHandler[TextIO], stream: TextIO) -> None:
        super().__init__(inner.level)
        self.inner, self._stream = inner, stream

    def emit(self, record: logging.LogRecord) -> None:
        with tqdm.external_write_mode(file=self._stream):
            self.inner.handle(record)


def _log_above(stream: TextIO) -> list[tuple[logging.Logger, _AboveBar]]:
    """Route the log handlers that write to the bar's terminal through ``_AboveBar``; returns what was swapped."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]  # hivemind's logger, for one, has its own handler and does not propagate
    swapped: list[tuple[logging.Logger, _AboveBar]] = []
    for logger in loggers:
        for index, handler in enumerate(logger.handlers):
            if _same_terminal(handler, stream):
                wrapper = _AboveBar(handler, stream)  # type: ignore[arg-type]
                logger.handlers[index] = wrapper
                swapped.append((logger, wrapper))
    return swapped


def _same_terminal(handler: logging.Handler, stream: TextIO) -> bool:
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    target = handler.stream
    consoles = (sys.stdout, sys.stderr)
    return target is stream or (target in consoles and stream in consoles and _isatty(target))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed
        return False


def _restore(swapped: list[tuple[logging.Logger, _AboveBar]]) -> None:
    for logger, wrapper in swapped:
        if wrapper in logger.handlers:
            logger.handlers[logger.handlers.index(wrapper)] = wrapper.inner


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
