"""The trainer's progress bar shares the terminal with the log: records go above it, never onto it."""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Iterator

import pytest

from swarmnet.diloco import Progress
from swarmnet.peers.trainer_progress import ProgressDisplay

FORMAT = "%(levelname)s %(name)s: %(message)s"


class FakeTerminal(io.StringIO):
    """Captures what is written and says it is a terminal (it has no file descriptor, so no size of its own)."""

    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """What a terminal shows for ``text``: ``\\r`` returns to the line's start, later characters overwrite."""
    lines: list[str] = []
    line: list[str] = []
    column = 0
    for char in text:
        if char == "\n":
            lines.append("".join(line).rstrip())
            line, column = [], 0
        elif char == "\r":
            column = 0
        else:
            line[column : column + 1] = [char]
            column += 1
    lines.append("".join(line).rstrip())
    return lines


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> FakeTerminal:
    monkeypatch.setenv("COLUMNS", "100")  # tqdm sizes the bar from it when the stream has no descriptor
    return FakeTerminal()


@pytest.fixture
def log(terminal: FakeTerminal) -> Iterator[logging.Logger]:
    """A logger that writes to the fake terminal, as ``configure_logging`` makes the root logger write to stderr."""
    logger = logging.getLogger("swarmnet.test_progress")
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    logger.handlers.clear()
    logger.propagate = True


def width(monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((columns, 24)))


def progress(step: int, event: str = "step") -> Progress:
    return Progress(step=step, rounds=step // 10, loss=2.5, bytes_sent=0, bytes_received=0, event=event)


def test_a_record_logged_under_the_bar_gets_its_own_line_and_the_bar_comes_back(
    monkeypatch: pytest.MonkeyPatch, terminal: FakeTerminal, log: logging.Logger
) -> None:
    width(monkeypatch, 100)
    before = list(log.handlers)  # ours, and pytest's capture
    display = ProgressDisplay("auto", total=100, stream=terminal)
    try:
        assert display.mode == "bar"
        display.update(progress(20))
        display._bar.refresh()  # type: ignore[union-attr]  # tqdm redraws at most every 0.1 s on its own
        drawn = len(terminal.getvalue())
        log.info("round 20 of run kjv averaged")
        after = screen(terminal.getvalue()[drawn:])
        record = "INFO swarmnet.test_progress: round 20 of run kjv averaged"
        assert record in after, after
        assert after.index(record) < len(after) - 1, "the bar was not drawn again after the record"
        assert "20/100" in after[-1], after
        assert "sent 0 B" in after[-1], after
        assert all("sent 0 B]" not in line or line.endswith("]") for line in screen(terminal.getvalue())), (
            "a record was glued to the bar"
        )
    finally:
        display.close()
    assert log.handlers == before, "close() gives the log its own handler back"
    log.info("after the bar")
    assert screen(terminal.getvalue())[-2:] == ["INFO swarmnet.test_progress: after the bar", ""]


def test_a_terminal_with_no_columns_gets_plain_log_lines(
    monkeypatch: pytest.MonkeyPatch, terminal: FakeTerminal, log: logging.Logger
) -> None:
    width(monkeypatch, 0)
    trainer_log = logging.getLogger("swarmnet.peers.trainer_progress")
    monkeypatch.setattr(trainer_log, "handlers", log.handlers)
    monkeypatch.setattr(trainer_log, "propagate", False)
    monkeypatch.setattr(trainer_log, "level", logging.INFO)
    for mode in ("auto", "bar"):
        display = ProgressDisplay(mode, total=100, stream=terminal)
        try:
            assert display.mode == "log"
            assert display._bar is None
            display.update(progress(10))  # a step: nothing to say in a log line
            display.update(progress(20, event="sync"))
            log.info("round 2 averaged")
        finally:
            display.close()
    text = terminal.getvalue()
    assert "\r" not in text
    assert (
        text.splitlines()
        == [
            "INFO swarmnet.peers.trainer_progress: sync: step 20 round 2 loss 2.500 sent 0 B",
            "INFO swarmnet.test_progress: round 2 averaged",
        ]
        * 2
    )


def test_not_a_terminal_means_log_lines_and_no_handler_is_touched(terminal: FakeTerminal) -> None:
    stream = io.StringIO()
    before = {name: list(logger.handlers) for name, logger in _loggers()}
    display = ProgressDisplay("auto", total=None, stream=stream)
    display.close()
    assert display.mode == "log"
    assert stream.getvalue() == ""
    assert {name: list(logger.handlers) for name, logger in _loggers()} == before


def _loggers() -> list[tuple[str, logging.Logger]]:
    found = [("", logging.getLogger())]
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            found.append((name, logger))
    return found
