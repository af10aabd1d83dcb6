"""An averager's error-feedback state seen from outside: statistics computed once per step, and the checks
that residuals from a checkpoint fit the tensors the averager will average (``averager.py``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from swarmnet.averaging.vectors import feedback_keys
from swarmnet.compression import ErrorFeedback
from swarmnet.compression.error_feedback import ErrorFeedbackStatistics

__all__ = ["FeedbackWatch", "keep_schema"]

logger = logging.getLogger(__name__)

_PREFIXES = ("residual/", "velocity/", "shape/")


class FeedbackWatch:
    """Whether a step is changing an ``ErrorFeedback`` now, and its statistics as of the last change.

    The statistics take a pass over every residual, so they are computed at most once per step, when first
    asked for (a trainer asks on every inner step).
    """

    def __init__(self, feedback: ErrorFeedback) -> None:
        self._feedback = feedback
        self._running = 0
        self._statistics: ErrorFeedbackStatistics | None = None

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Mark a step that encodes through the residuals (steps may overlap)."""
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._statistics = None

    def changed(self) -> None:
        """The residuals were replaced: recompute the statistics when next asked."""
        self._statistics = None

    def check_idle(self) -> None:
        """Raise ``RuntimeError`` while a step is running: its residuals are half updated."""
        if self._running:
            raise RuntimeError("a step is running: its error-feedback residuals are half updated")

    def statistics(self) -> ErrorFeedbackStatistics:
        """The residuals' statistics (during a step, those of the state it started from, once known)."""
        if self._statistics is None:
            self._statistics = self._feedback.statistics()
        return self._statistics


def keep_schema(state: dict[str, torch.Tensor], schema: str, numel: int) -> dict[str, torch.Tensor]:
    """The entries of an averager's ``ErrorFeedback`` state that belong to ``schema``, checked to hold vectors
    of ``numel`` elements; entries of other schemas are dropped with a log line.

    Raises ``ValueError`` for an entry that is no averager residual, or one of ``schema`` that does not fit.
    """
    if not isinstance(state, dict):
        raise ValueError(f"error-feedback state must be a dict, got {type(state).__name__}")
    ours = set(feedback_keys(schema))
    kept: dict[str, torch.Tensor] = {}
    others: set[str] = set()
    for name, value in state.items():
        prefix = next((p for p in _PREFIXES if isinstance(name, str) and name.startswith(p)), None)
        key = name[len(prefix) :] if prefix is not None else ""
        side, _, owner = key.partition("/")
        if prefix is None or side not in ("sent", "reduced") or not owner:
            raise ValueError(f"unexpected entry {name!r} in an averager's error-feedback state")
        if key not in ours:
            others.add(owner)
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"error-feedback entry {name!r} is a {type(value).__name__}, not a tensor")
        size = [numel] if prefix == "shape/" else None
        if (size is not None and value.tolist() != size) or (size is None and value.numel() != numel):
            got = value.tolist() if prefix == "shape/" else f"{value.numel()} elements"
            raise ValueError(f"error-feedback entry {name!r} does not fit a vector of {numel} elements: {got}")
        kept[name] = value
    if others:
        logger.info("dropping the error-feedback residuals of %d other tensor schemas", len(others))
    return kept
