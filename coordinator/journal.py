"""An append-only JSON-lines file: one small durable write per event, compacted now and then.

The registry and the replay window change on every registration. Rewriting a whole file each
time costs O(registered clients) per request; appending one line and fsyncing costs O(1). A reader
replays the lines; a crash mid-append leaves at most one torn last line, which is skipped. The
owner compacts (an atomic rewrite with only the live records) when the file holds far more lines
than live records.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from swarmnet.coordinator.atomic import write_atomic

__all__ = ["Journal"]

logger = logging.getLogger(__name__)


class Journal:
    """Appends, replays and rewrites one JSON-lines file (each line one JSON object)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lines = 0  # lines in the file as of the last read, append or rewrite

    def read(self) -> list[dict[str, Any]]:
        """Every intact record in order; torn or foreign lines are skipped with one warning."""
        if not self.path.exists():
            self.lines = 0
            return []
        records, skipped = [], 0
        raw_lines = self.path.read_bytes().splitlines()
        for raw in raw_lines:
            try:
                record = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped += 1
        if skipped:
            logger.warning("%s: skipped %d unreadable line(s) (a write torn by a crash?)", self.path, skipped)
        self.lines = len(raw_lines)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Add one record durably (written and fsynced before this returns)."""
        line = json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if os.fstat(fd).st_size and not _ends_with_newline(fd):
                line = b"\n" + line  # after a torn last line: start a fresh one
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.lines += 1

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file atomically with exactly ``records``."""
        lines = [json.dumps(r, separators=(",", ":"), allow_nan=False) for r in records]
        write_atomic(self.path, "".join(f"{line}\n" for line in lines).encode(), mode=0o600)
        self.lines = len(lines)


def _ends_with_newline(fd: int) -> bool:
    return os.pread(fd, 1, os.fstat(fd).st_size - 1) == b"\n"
