"""Canonical bytes that clients sign and the coordinator verifies (protocol version 1).

Signatures cover a domain tag, so a signature made for one message kind can never be replayed as
another, and every field the coordinator acts on. Update signatures also cover the round nonce
the coordinator drew when it opened the round, so an update captured in one round (or one run)
is rejected in every other.
"""

from __future__ import annotations

import struct

__all__ = ["PROTOCOL_VERSION", "SESSION_METADATA", "register_message", "update_message"]

PROTOCOL_VERSION = 1
SESSION_METADATA = "x-swarmnet-session-bin"  # call metadata holding the session token (binary)
_REGISTER_TAG = b"swarmnet.federated.v1/register\x00"
_UPDATE_TAG = b"swarmnet.federated.v1/update\x00"


def _field(value: bytes) -> bytes:
    """Length-prefixed, so no two different field lists share an encoding."""
    return struct.pack(">I", len(value)) + value


def register_message(public_key: bytes, timestamp_ms: int, nonce: bytes, token: str) -> bytes:
    """What a client signs to register: its key, a fresh timestamp and nonce, and the operator token."""
    return _REGISTER_TAG + b"".join(
        (_field(public_key), struct.pack(">q", timestamp_ms), _field(nonce), _field(token.encode()))
    )


def update_message(
    *,
    round_nonce: bytes,
    round_: int,
    global_version: int,
    samples: int,
    encoding: str,
    payload_size: int,
    payload_sha256: bytes,
) -> bytes:
    """What a client signs for an update: the round it answers and the digest of its payload."""
    numbers = struct.pack(">qqqQ", round_, global_version, samples, payload_size)
    return _UPDATE_TAG + b"".join((_field(round_nonce), numbers, _field(encoding.encode()), _field(payload_sha256)))
