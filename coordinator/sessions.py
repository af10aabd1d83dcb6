"""Session tokens: what a registered client shows on every call, until it expires or is revoked.

A token is 41 bytes::

    version 0x01 | issued_ms: u64 big-endian | HMAC-SHA256(secret, tag | len(client_id) | client_id | issued_ms)

It carries its issue time, so the coordinator needs no table of sessions: a restart keeps every
session (the secret is on disk), and a token is refused ``session_ttl_s`` after it was issued.
Because the time is inside the MAC, a client cannot extend its own session; because the client id
is inside it, a token is useless to any other client. Revocation (``revocations.py``) refuses the
tokens issued up to a moment, for one client; rotating ``secret.key`` refuses every token at once.
Clients treat the token as opaque bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from swarmnet.coordinator.rejection import Rejected

__all__ = ["SESSION_BYTES", "SessionTokens"]

SESSION_BYTES = 41
_VERSION = 1
_TAG = b"swarmnet.federated.v1/session\x00"
_FUTURE_SLACK_MS = 60_000  # a token from "the future" means the clock went back; tolerate a minute


@dataclass(frozen=True)
class SessionTokens:
    """Issues and checks session tokens under one secret."""

    secret: bytes
    ttl_s: float
    clock: Callable[[], float] = time.time  # wall clock: a token must outlive a restart

    def issue(self, client_id: str) -> tuple[bytes, int]:
        """A fresh token for ``client_id`` and its issue time (Unix milliseconds)."""
        issued_ms = int(self.clock() * 1000)
        return bytes([_VERSION]) + struct.pack(">Q", issued_ms) + self._mac(client_id, issued_ms), issued_ms

    def check(self, client_id: str, token: bytes) -> int:
        """The token's issue time if it is genuine and unexpired for ``client_id``; ``Rejected`` otherwise."""
        if len(token) != SESSION_BYTES or token[0] != _VERSION:
            raise _refused("missing or malformed session token (register to get one)")
        (issued_ms,) = struct.unpack_from(">Q", token, 1)
        if not hmac.compare_digest(token[9:], self._mac(client_id, issued_ms)):
            raise _refused("invalid session token")
        now_ms = self.clock() * 1000
        if issued_ms > now_ms + _FUTURE_SLACK_MS:
            raise _refused("session token issued in the future (the coordinator's clock went back): register again")
        if now_ms >= issued_ms + self.ttl_s * 1000:
            raise _refused("session expired: register again")
        return int(issued_ms)

    def _mac(self, client_id: str, issued_ms: int) -> bytes:
        name = client_id.encode()
        body = _TAG + struct.pack(">I", len(name)) + name + struct.pack(">Q", issued_ms)
        return hmac.new(self.secret, body, hashlib.sha256).digest()


def _refused(reason: str) -> Rejected:
    return Rejected(grpc.StatusCode.UNAUTHENTICATED, reason)
