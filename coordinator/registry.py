"""Registered clients: key-possession proof at registration, session tokens, liveness.

A client registers by signing (key, timestamp, nonce, operator token) with its Ed25519 key, so
only the holder of a key can register it; a replayed registration fails on the nonce, a stale one
on the timestamp. Its session token is ``HMAC(secret, client id)``: stateless, so it survives a
coordinator restart, and unforgeable without the secret in the state directory.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import grpc

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.proto import federated_pb2 as pb
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.store import ClientRecord, CoordinatorStore
from swarmnet.federated.signing import PROTOCOL_VERSION, register_message
from swarmnet.identity import PUBLIC_KEY_SIZE, peer_id_from_public_key, verify_signature

__all__ = ["ClientRegistry"]

logger = logging.getLogger(__name__)

_NONCES_KEPT = 100_000  # registration nonces remembered (older ones are outside the clock skew anyway)
_NONCE_SIZE = 16


class ClientRegistry:
    """The clients a coordinator knows, persisted through its store."""

    def __init__(
        self, config: CoordinatorConfig, store: CoordinatorStore, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._store = store
        self._secret = store.secret()
        self._clock = clock
        self.clients: dict[str, ClientRecord] = store.load_clients()
        self._last_seen: dict[str, float] = {}
        self._nonces: OrderedDict[bytes, None] = OrderedDict()

    def register(self, request: pb.RegisterRequest) -> tuple[ClientRecord, bytes]:
        """Check a registration and record the client; return it and its session token."""
        self._check_register(request)
        client_id = peer_id_from_public_key(request.public_key)
        caps = request.capabilities
        record = ClientRecord(
            client_id=client_id,
            public_key=bytes(request.public_key),
            samples=int(caps.samples),
            codecs=tuple(caps.codecs),
            secure_aggregation=bool(caps.secure_aggregation),
            registered_at=time.time(),
        )
        known = self.clients.get(client_id)
        self.clients[client_id] = record
        if known is None or (known.samples, known.codecs, known.secure_aggregation) != (
            record.samples,
            record.codecs,
            record.secure_aggregation,
        ):
            self._store.save_clients(self.clients)
        self.touch(client_id)
        logger.info("registered client %s (%d samples)", client_id, record.samples)
        return record, self.session_for(client_id)

    def _check_register(self, request: pb.RegisterRequest) -> None:
        if request.protocol_version != PROTOCOL_VERSION:
            raise Rejected(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol version {request.protocol_version} unsupported; this coordinator speaks {PROTOCOL_VERSION}",
            )
        if len(request.public_key) != PUBLIC_KEY_SIZE or len(request.nonce) != _NONCE_SIZE:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "public_key must be 32 bytes and nonce 16 bytes")
        if request.capabilities.samples < 0:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "capabilities.samples must be >= 0")
        skew_ms = abs(time.time() * 1000 - request.timestamp_ms)
        if skew_ms > self._config.clock_skew_s * 1000:
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, f"registration timestamp is {skew_ms / 1000:.0f} s off")
        message = register_message(request.public_key, request.timestamp_ms, request.nonce, request.token)
        if not verify_signature(request.public_key, request.signature, message):
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "registration signature does not verify")
        if request.nonce in self._nonces:
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "registration nonce was already used (replay)")
        self._check_admission(request)
        self._nonces[bytes(request.nonce)] = None
        while len(self._nonces) > _NONCES_KEPT:
            self._nonces.popitem(last=False)

    def _check_admission(self, request: pb.RegisterRequest) -> None:
        tokens, keys = self._config.tokens, self._config.allowed_keys
        if tokens and not any(hmac.compare_digest(request.token.encode(), t.encode()) for t in tokens):
            raise Rejected(grpc.StatusCode.PERMISSION_DENIED, "operator token missing or not recognised")
        if keys is not None and bytes(request.public_key) not in keys:
            raise Rejected(grpc.StatusCode.PERMISSION_DENIED, "this public key is not on the coordinator's list")
        if self._config.rounds.secure_aggregation and not request.capabilities.secure_aggregation:
            raise Rejected(
                grpc.StatusCode.FAILED_PRECONDITION, "this run uses secure aggregation; the client lacks it"
            )

    def session_for(self, client_id: str) -> bytes:
        """The session token of ``client_id``."""
        return hmac.new(self._secret, b"session\x00" + client_id.encode(), hashlib.sha256).digest()

    def authenticate(self, client_id: str, session: bytes | None) -> ClientRecord:
        """The record of an authenticated caller; ``Rejected(UNAUTHENTICATED)`` otherwise."""
        record = self.clients.get(client_id)
        if record is None:
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, f"unknown client {client_id[:64]!r}: register first")
        if session is None or not hmac.compare_digest(session, self.session_for(client_id)):
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid session token")
        self.touch(client_id)
        return record

    def touch(self, client_id: str) -> None:
        """Note that ``client_id`` is alive now."""
        self._last_seen[client_id] = self._clock()

    def active(self) -> list[str]:
        """Clients seen within the active window, sorted."""
        horizon = self._clock() - self._config.rounds.active_window_s
        return sorted(c for c, seen in self._last_seen.items() if seen >= horizon and c in self.clients)

    def round_nonce(self, round_: int, version: int) -> bytes:
        """A per-round nonce, stable across restarts (so a resubmission after one still verifies)."""
        body = f"round\x00{self._config.run}\x00{round_}\x00{version}".encode()
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
