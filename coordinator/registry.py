"""Registered clients: key-possession proof at registration, session tokens, liveness.

A client registers by signing (key, timestamp, nonce, operator token) with its Ed25519 key, so
only the holder of a key can register it. A replayed registration fails on its nonce, which is
kept on disk as long as its timestamp is fresh (``replay.py``), so a restart does not reopen the
replay; a stale one fails on the timestamp. The session token (``sessions.py``) expires after
``session_ttl_s`` and is refused once the operator revokes the client (``revocations.py``).

Everything a registration stores is bounded first (``request_limits.py``): capabilities are
kept only as far as the coordinator understands them, and the registry holds at most
``max_registered`` clients; when it is full, a client whose sessions have all expired makes room.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable

import grpc

from swarmnet.compression import codec_names
from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.replay import ReplayWindow
from swarmnet.coordinator.request_limits import check_register
from swarmnet.coordinator.revocations import Revocations
from swarmnet.coordinator.sessions import SessionTokens
from swarmnet.coordinator.store import ClientRecord, CoordinatorStore
from swarmnet.federated.signing import PROTOCOL_VERSION, register_message
from swarmnet.identity import PUBLIC_KEY_SIZE, peer_id_from_public_key, verify_signature
from swarmnet.proto import federated_pb2 as pb

__all__ = ["ClientRegistry"]

logger = logging.getLogger(__name__)

_NONCE_SIZE = 16
_COMPACT_SLACK = 1024  # journal lines beyond the registry's size before it is folded into a snapshot


class ClientRegistry:
    """The clients a coordinator knows, persisted through its store."""

    def __init__(
        self,
        config: CoordinatorConfig,
        store: CoordinatorStore,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._secret = store.secret()
        self._clock = clock
        self._wall_clock = wall_clock
        self.sessions = SessionTokens(self._secret, config.session_ttl_s, wall_clock)
        self.revocations = Revocations(store.directory)
        self._replay = ReplayWindow(store.directory / "nonces.journal", config.clock_skew_s, clock=wall_clock)
        self.clients: dict[str, ClientRecord] = self._loaded()
        self._last_seen: dict[str, float] = {}

    def _loaded(self) -> dict[str, ClientRecord]:
        """The stored registry, with capabilities cut to what this coordinator understands."""
        stored = self._store.load_clients()
        clients = {c: _known_capabilities(r) for c, r in stored.items()}
        if clients != stored or self._store.journalled > len(clients) + _COMPACT_SLACK:
            self._store.save_clients(clients)
        return clients

    def register(self, request: pb.RegisterRequest) -> tuple[ClientRecord, bytes]:
        """Check a registration and record the client; return it and its session token."""
        self._check_register(request)
        client_id = peer_id_from_public_key(request.public_key)
        self._check_admission(request, client_id)
        self._make_room(client_id)
        self._replay.remember(request.nonce, request.timestamp_ms)  # durable before the session exists
        session, issued_ms = self.sessions.issue(client_id)
        caps = request.capabilities
        record = _known_capabilities(
            ClientRecord(
                client_id=client_id,
                public_key=bytes(request.public_key),
                samples=int(caps.samples),
                codecs=tuple(caps.codecs),
                secure_aggregation=bool(caps.secure_aggregation),
                registered_at=issued_ms / 1000,
            )
        )
        self._store.record_client(record)
        self.clients[client_id] = record
        if self._store.journalled > len(self.clients) + _COMPACT_SLACK:
            self._store.save_clients(self.clients)
        self.touch(client_id)
        size = (
            f"{record.samples} samples" if record.samples else "size unknown: each update claims its round's samples"
        )
        logger.info("registered client %s (%s)", client_id, size)
        return record, session

    def _check_register(self, request: pb.RegisterRequest) -> None:
        if request.protocol_version != PROTOCOL_VERSION:
            raise Rejected(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol version {request.protocol_version} unsupported; this coordinator speaks {PROTOCOL_VERSION}",
            )
        if len(request.public_key) != PUBLIC_KEY_SIZE or len(request.nonce) != _NONCE_SIZE:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "public_key must be 32 bytes and nonce 16 bytes")
        check_register(request)
        skew_ms = abs(self._wall_clock() * 1000 - request.timestamp_ms)
        if skew_ms > self._config.clock_skew_s * 1000:
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, f"registration timestamp is {skew_ms / 1000:.0f} s off")
        message = register_message(request.public_key, request.timestamp_ms, request.nonce, request.token)
        if not verify_signature(request.public_key, request.signature, message):
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "registration signature does not verify")
        if self._replay.seen(request.nonce):
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "registration nonce was already used (replay)")

    def _check_admission(self, request: pb.RegisterRequest, client_id: str) -> None:
        tokens, keys = self._config.tokens, self._config.allowed_keys
        if tokens and not any(hmac.compare_digest(request.token.encode(), t.encode()) for t in tokens):
            raise Rejected(grpc.StatusCode.PERMISSION_DENIED, "operator token missing or not recognised")
        if keys is not None and bytes(request.public_key) not in keys:
            raise Rejected(grpc.StatusCode.PERMISSION_DENIED, "this public key is not on the coordinator's list")
        revocation = self.revocations.lookup(client_id)
        if revocation is not None and revocation.banned:
            raise Rejected(grpc.StatusCode.PERMISSION_DENIED, "this client was revoked by the operator")
        if self._config.rounds.secure_aggregation and not request.capabilities.secure_aggregation:
            raise Rejected(
                grpc.StatusCode.FAILED_PRECONDITION, "this run uses secure aggregation; the client lacks it"
            )

    def _make_room(self, client_id: str) -> None:
        """Evict the longest-expired client when the registry is full; refuse when none has expired."""
        if client_id in self.clients or len(self.clients) < self._config.max_registered:
            return
        expired_before = self._wall_clock() - self._config.session_ttl_s
        active = set(self.active())
        candidates = [
            r for r in self.clients.values() if r.registered_at <= expired_before and r.client_id not in active
        ]
        if not candidates:
            raise Rejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the registry is full ({len(self.clients)} clients with live sessions): retry later",
            )
        oldest = min(candidates, key=lambda r: r.registered_at)
        self._store.forget_client(oldest.client_id)
        del self.clients[oldest.client_id]
        self._last_seen.pop(oldest.client_id, None)
        logger.info("registry full: forgot %s, whose sessions had expired", oldest.client_id)

    def authenticate(self, client_id: str, session: bytes | None) -> ClientRecord:
        """The record of an authenticated caller; ``Rejected(UNAUTHENTICATED)`` otherwise."""
        record = self.clients.get(client_id)
        if record is None:
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, f"unknown client {client_id[:64]!r}: register first")
        issued_ms = self.sessions.check(client_id, session or b"")
        revocation = self.revocations.lookup(client_id)
        if revocation is not None and (revocation.banned or issued_ms <= revocation.not_before_ms):
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "session revoked by the operator")
        self.touch(client_id)
        return record

    def touch(self, client_id: str) -> None:
        """Note that ``client_id`` is alive now."""
        self._last_seen[client_id] = self._clock()

    def active(self) -> list[str]:
        """Clients seen within the active window and not revoked, sorted."""
        horizon = self._clock() - self._config.rounds.active_window_s
        banned = self.revocations.banned()
        return sorted(
            c for c, seen in self._last_seen.items() if seen >= horizon and c in self.clients and c not in banned
        )

    def round_nonce(self, round_: int, version: int) -> bytes:
        """A per-round nonce, stable across restarts (so a resubmission after one still verifies)."""
        body = f"round\x00{self._config.run}\x00{round_}\x00{version}".encode()
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:16]


def _known_capabilities(record: ClientRecord) -> ClientRecord:
    """``record`` with only the codec names this coordinator can use (bounded, sorted)."""
    usable = {*codec_names(), "topk"}
    codecs = tuple(sorted({c for c in record.codecs if c in usable}))
    if codecs == record.codecs:
        return record
    return ClientRecord(
        client_id=record.client_id,
        public_key=record.public_key,
        samples=record.samples,
        codecs=codecs,
        secure_aggregation=record.secure_aggregation,
        registered_at=record.registered_at,
    )
