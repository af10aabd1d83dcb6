"""The operator's revocation list: ``revoked.json`` in the coordinator's state directory.

``swarmnet coordinator --state-dir DIR --revoke CLIENT_ID`` adds an entry, whether or not the
coordinator is running; a running coordinator re-reads the file whenever it changes (one ``stat``
per authenticated call), so the client's next call is refused. An entry holds:

* ``not_before_ms``: sessions issued at or before this moment are refused, for good;
* ``banned``: the client may not register again (so it cannot simply get a new session).

``--reinstate`` clears ``banned`` but keeps ``not_before_ms``, so the client must register afresh
(which needs its private key) and every token issued before the revocation stays dead. Writes are
atomic and serialised by a lock file, so two operators cannot lose each other's entries.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmnet.coordinator.atomic import write_atomic
from swarmnet.errors import ConfigError

__all__ = ["REVOCATIONS_FILE", "Revocation", "Revocations"]

logger = logging.getLogger(__name__)

REVOCATIONS_FILE = "revoked.json"
_FORMAT = 1


@dataclass(frozen=True)
class Revocation:
    """One client's entry."""

    not_before_ms: int  # sessions issued at or before this are refused
    banned: bool  # registration refused too


class Revocations:
    """Reads (and, for the command line, edits) the revocation list of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / REVOCATIONS_FILE
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, Revocation] = {}
        self._refresh(strict=True)

    def lookup(self, client_id: str) -> Revocation | None:
        """``client_id``'s entry as the file says now."""
        self._refresh(strict=False)
        return self._entries.get(client_id)

    def banned(self) -> set[str]:
        """Every client that may not register or call."""
        self._refresh(strict=False)
        return {c for c, entry in self._entries.items() if entry.banned}

    def revoke(self, client_id: str, now_ms: int) -> None:
        """Refuse every session of ``client_id`` issued up to ``now_ms``, and its registrations."""
        with self._editing() as entries:
            entries[client_id] = Revocation(not_before_ms=now_ms, banned=True)

    def reinstate(self, client_id: str) -> bool:
        """Let ``client_id`` register again (its old sessions stay refused); ``False`` if it was not revoked."""
        with self._editing() as entries:
            entry = entries.get(client_id)
            if entry is None:
                return False
            entries[client_id] = Revocation(not_before_ms=entry.not_before_ms, banned=False)
            return True

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Revocation]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(REVOCATIONS_FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = _parse(self.path.read_bytes()) if self.path.exists() else {}
            yield entries
            document = {
                "format": _FORMAT,
                "clients": {c: {"not_before_ms": e.not_before_ms, "banned": e.banned} for c, e in entries.items()},
            }
            write_atomic(self.path, json.dumps(document, indent=1, sort_keys=True).encode(), mode=0o600)
        finally:
            os.close(lock)
        self._refresh(strict=True)

    def _refresh(self, strict: bool) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._entries = None, {}
            return
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._entries = _parse(self.path.read_bytes())
        except (OSError, ConfigError) as error:
            if strict:
                raise
            logger.error("%s is unreadable (%s); keeping the revocations read before", self.path, error)


def _parse(data: bytes) -> dict[str, Revocation]:
    try:
        document: Any = json.loads(data)
        if document.get("format") != _FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {_FORMAT}")
        return {
            str(client): Revocation(not_before_ms=int(entry["not_before_ms"]), banned=bool(entry["banned"]))
            for client, entry in document["clients"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ConfigError(f"malformed revocation list: {type(error).__name__}: {error}") from error
