"""Bounds on every request field, checked before the coordinator acts on, stores or persists it.

Each ``check_*`` raises ``Rejected(INVALID_ARGUMENT)`` naming the field; nothing here costs more
than reading the lengths. The figures are documented for client authors in
``swarmnet/proto/PROTOCOL.md`` ("Limits").
"""

from __future__ import annotations

import math

import grpc

from swarmnet.coordinator.open_round import MAX_SAMPLES
from swarmnet.coordinator.rejection import Rejected
from swarmnet.proto import federated_pb2 as pb

__all__ = [
    "MAX_CODECS",
    "MAX_ID_CHARS",
    "MAX_SECAGG_BYTES",
    "MAX_SECAGG_MESSAGES",
    "MAX_TEXT_CHARS",
    "MAX_TOKEN_BYTES",
    "MAX_WAIT_S",
    "check_register",
    "check_secagg",
    "check_update_header",
    "client_id_of",
    "wait_of",
]

MAX_ID_CHARS = 128  # client ids are 52-character peer ids
MAX_TOKEN_BYTES = 1024
MAX_CODECS = 64
MAX_TEXT_CHARS = 128  # a codec name, device or software version
MAX_WAIT_S = 30.0  # longest GetTask long-poll; longer asks are shortened to this
MAX_SECAGG_MESSAGES = 1024  # a secure round has at most 1024 clients
MAX_SECAGG_BYTES = 64 << 10  # the keys field, and each message
_ENCODINGS = ("codec", "secagg")


def _invalid(message: str) -> Rejected:
    return Rejected(grpc.StatusCode.INVALID_ARGUMENT, message)


def client_id_of(client_id: str) -> str:
    """``client_id`` if it has a plausible length."""
    if not 0 < len(client_id) <= MAX_ID_CHARS:
        raise _invalid(f"client_id must have 1 to {MAX_ID_CHARS} characters, got {len(client_id)}")
    return client_id


def wait_of(request: pb.TaskRequest) -> float:
    """The long-poll time asked for: finite and >= 0, at most ``MAX_WAIT_S``."""
    if not (math.isfinite(request.wait_s) and request.wait_s >= 0):
        raise _invalid(f"wait_s must be finite and >= 0, got {request.wait_s}")
    return min(request.wait_s, MAX_WAIT_S)


def check_register(request: pb.RegisterRequest) -> None:
    """Sizes of a registration's token and capabilities."""
    if len(request.token.encode()) > MAX_TOKEN_BYTES:
        raise _invalid(f"token exceeds {MAX_TOKEN_BYTES} bytes")
    caps = request.capabilities
    if len(caps.codecs) > MAX_CODECS:
        raise _invalid(f"capabilities.codecs lists {len(caps.codecs)} names; at most {MAX_CODECS}")
    for name, value in (("device", caps.device), ("software_version", caps.software_version), *_codecs(caps)):
        if len(value) > MAX_TEXT_CHARS:
            raise _invalid(f"capabilities.{name} exceeds {MAX_TEXT_CHARS} characters")
    if not 0 <= caps.samples <= MAX_SAMPLES:
        raise _invalid(f"capabilities.samples must be in [0, {MAX_SAMPLES}], got {caps.samples}")


def _codecs(caps: pb.Capabilities) -> list[tuple[str, str]]:
    return [("codecs", name) for name in caps.codecs]


def check_update_header(header: pb.UpdateHeader) -> None:
    """Field sizes of an update header (the round checks its meaning)."""
    client_id_of(header.client_id)
    if header.encoding not in _ENCODINGS:
        raise _invalid(f"encoding must be one of {', '.join(_ENCODINGS)}, got {header.encoding[:32]!r}")
    if len(header.payload_sha256) != 32:
        raise _invalid("payload_sha256 must be 32 bytes")


def check_secagg(request: pb.SecAggRequest) -> None:
    """Phase, key and message sizes of a secure-aggregation message."""
    client_id_of(request.client_id)
    if request.phase not in pb.SecAggRequest.Phase.values():
        raise _invalid(f"unknown secure-aggregation phase {request.phase}")
    if len(request.keys) > MAX_SECAGG_BYTES:
        raise _invalid(f"keys exceed {MAX_SECAGG_BYTES} bytes")
    if len(request.messages) > MAX_SECAGG_MESSAGES:
        raise _invalid(f"{len(request.messages)} messages; at most {MAX_SECAGG_MESSAGES}")
    for recipient, message in request.messages.items():
        if len(recipient) > MAX_ID_CHARS or len(message) > MAX_SECAGG_BYTES:
            raise _invalid(f"a message key exceeds {MAX_ID_CHARS} characters or its value {MAX_SECAGG_BYTES} bytes")
