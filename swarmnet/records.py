"""Signed, typed, versioned DHT records.

Every value swarmnet puts in the DHT is a ``Record[P]``: a header (protocol version, kind,
author peer id, the DHT key and subkey it belongs to, timestamp, expiry) around a typed pydantic
payload ``P``. On the wire it is an envelope::

    b"SWR1" | author public key (32 B) | Ed25519 signature (64 B) | body (UTF-8 JSON)

The signature covers the body bytes exactly as sent, so a newer peer may add fields to the body
or payload and older peers still verify and read it (unknown fields are ignored). Binding the key
and subkey into the signed body stops anyone from copying a genuine record to another slot.

``RecordVerifier.verify`` checks, cheapest first: size, framing, signature, strict JSON (no
duplicate keys at any depth, no NaN or infinity), schema, that the signer is the claimed author,
protocol version, kind, key binding, expiry, a timestamp not from the future, a bounded lifetime,
the limits of the key's family (``swarmnet.keyspace``), and no replay of an older record than one
already seen. No record model accepts a non-finite number, whatever its fields.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarmnet.errors import ConfigError, RecordRejected
from swarmnet.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, peer_id_from_public_key, verify_signature
from swarmnet.keyspace import family_of
from swarmnet.version import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION

__all__ = [
    "Payload",
    "Record",
    "RecordHeader",
    "RecordPolicy",
    "RecordVerifier",
    "authenticate_envelope",
    "check_key_family",
    "check_strict_json",
    "sign_record",
]

logger = logging.getLogger(__name__)

MAGIC = b"SWR1"
_HEADER_SIZE = len(MAGIC) + PUBLIC_KEY_SIZE + SIGNATURE_SIZE
# Domain separation: a record signature can never be replayed as a signature over anything else.
_SIGNING_DOMAIN = b"swarmnet-record\x00"


# Every record model: unknown fields ignored (newer peers may add some), immutable, and no NaN or
# infinity in any float field (they are not JSON, and no reader can order or sum them).
_MODEL_CONFIG = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class Payload(BaseModel):
    """Base class of record payloads; subclasses set ``KIND``. Unknown fields are ignored; non-finite
    numbers are refused in every float field (subclasses inherit the config)."""

    model_config = _MODEL_CONFIG
    KIND: ClassVar[str] = ""


P = TypeVar("P", bound=Payload)


class RecordHeader(BaseModel):
    """The signed fields every record has, whatever its payload."""

    model_config = _MODEL_CONFIG

    protocol_version: int = Field(ge=0)
    kind: str = Field(max_length=64)
    peer_id: str = Field(max_length=128)
    key: str = Field(max_length=512)
    subkey: str | None = Field(default=None, max_length=512)
    timestamp: float = Field(allow_inf_nan=False)
    expires_at: float = Field(allow_inf_nan=False)


class Record(RecordHeader, Generic[P]):
    """A verified record: header fields and a typed payload."""

    payload: P


@dataclass(frozen=True, kw_only=True)
class RecordPolicy:
    """What a reader accepts."""

    max_bytes: int = 16 * 1024  # whole envelope; larger values are rejected before parsing
    max_clock_skew: float = 30.0  # seconds a timestamp may lie in our future (peers' clocks differ)
    max_lifetime: float = 24 * 3600.0  # longest expires_at - timestamp; stops records that never expire

    def validate(self) -> None:
        """Raise ``ConfigError`` for non-positive limits."""
        if self.max_bytes < _HEADER_SIZE or self.max_clock_skew < 0 or self.max_lifetime <= 0:
            raise ConfigError(f"invalid record policy: {self}")


def sign_record(
    identity: Identity,
    payload: Payload,
    *,
    key: str,
    subkey: str | None,
    timestamp: float,
    expires_at: float,
) -> bytes:
    """Build and sign a record envelope for ``payload`` stored at ``key``/``subkey``."""
    body = {
        "protocol_version": PROTOCOL_VERSION,
        "kind": type(payload).KIND,
        "peer_id": identity.peer_id,
        "key": key,
        "subkey": subkey,
        "timestamp": timestamp,
        "expires_at": expires_at,
        "payload": payload.model_dump(mode="json"),
    }
    return seal_body(identity, body)


def seal_body(identity: Identity, body: Mapping[str, Any]) -> bytes:
    """Serialize ``body`` and wrap it in a signed envelope: the low-level step of ``sign_record``.

    No checks: tests use it to craft records that readers must reject.
    """
    body_bytes = json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    return MAGIC + identity.public_key + identity.sign(_SIGNING_DOMAIN + body_bytes) + body_bytes


def _check_envelope(raw: object, policy: RecordPolicy) -> tuple[bytes, bytes]:
    """Check size, framing and signature; return the author's public key and the signed body."""
    if not isinstance(raw, bytes):
        raise RecordRejected(f"malformed: expected bytes, got {type(raw).__name__}")
    if len(raw) > policy.max_bytes:
        raise RecordRejected(f"oversized: {len(raw)} bytes > limit {policy.max_bytes}")
    if len(raw) <= _HEADER_SIZE or not raw.startswith(MAGIC):
        raise RecordRejected("malformed: truncated or bad magic")
    public_key = raw[len(MAGIC) : len(MAGIC) + PUBLIC_KEY_SIZE]
    signature = raw[len(MAGIC) + PUBLIC_KEY_SIZE : _HEADER_SIZE]
    body = raw[_HEADER_SIZE:]
    if not verify_signature(public_key, signature, _SIGNING_DOMAIN + body):
        raise RecordRejected("forged: signature does not verify")
    return public_key, body


H = TypeVar("H", bound=RecordHeader)


@functools.cache
def _record_model(payload_type: type[P]) -> type[Record[P]]:
    """``Record[payload_type]``, built once: pydantic keeps parametrized models only weakly, and rebuilding
    one (its schema) took more CPU than the rest of a group formation (measured with py-spy)."""
    return Record[payload_type]  # type: ignore[valid-type]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members, refusing a repeated name: parsers disagree on which copy wins."""
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise RecordRejected(f"malformed: duplicate key {name[:64]!r}")
        obj[name] = value
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise RecordRejected(f"malformed: non-finite number {text[:32]}")
    return value


def _no_constant(name: str) -> None:
    raise RecordRejected(f"malformed: non-finite number {name}")


def check_strict_json(body: bytes) -> None:
    """Raise ``RecordRejected`` unless ``body`` is JSON without duplicate keys or non-finite numbers, at any depth.

    Python's json and pydantic both keep the last of duplicate keys and accept ``NaN``; a signed body
    must mean one thing to every reader, whatever its parser.
    """
    try:
        json.loads(body, object_pairs_hook=_unique_keys, parse_float=_finite_float, parse_constant=_no_constant)
    except RecordRejected:
        raise
    except (ValueError, RecursionError) as e:  # includes JSONDecodeError and UnicodeDecodeError
        raise RecordRejected(f"malformed: not JSON ({type(e).__name__})") from None


def _parse(body: bytes, model: type[H]) -> H:
    check_strict_json(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        raise RecordRejected(f"malformed: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _check_author(header: RecordHeader, public_key: bytes) -> None:
    signer = peer_id_from_public_key(public_key)
    if header.peer_id != signer:
        raise RecordRejected(f"impersonation: signed by {signer} but claims {header.peer_id}")


def check_key_family(header: RecordHeader, size: int) -> None:
    """The limits of the key's family, if the key is one the protocol uses (``swarmnet.keyspace``)."""
    family = family_of(header.key)
    if family is None:
        return
    if header.kind != family.kind:
        raise RecordRejected(f"kind: {family.name} keys hold {family.kind!r} records, not {header.kind!r}")
    if size > family.max_bytes:
        raise RecordRejected(f"oversized: {size} bytes > {family.max_bytes} for {family.name} records")
    if header.expires_at - header.timestamp > family.max_lifetime:
        raise RecordRejected(f"lifetime: over {family.max_lifetime:g}s for {family.name} records")


def authenticate_envelope(raw: object, policy: RecordPolicy) -> RecordHeader:
    """Check an envelope's size, signature and author, and return its header (payload unparsed)."""
    public_key, body = _check_envelope(raw, policy)
    header = _parse(body, RecordHeader)
    _check_author(header, public_key)
    return header


class RecordVerifier:
    """Verifies records on read and remembers the newest timestamp seen per author and slot.

    One verifier per reader: its replay memory is what rejects an older copy of a record
    after a newer one was seen.
    """

    def __init__(self, policy: RecordPolicy | None = None) -> None:
        self.policy = policy or RecordPolicy()
        self.policy.validate()
        self._newest: dict[tuple[str, str | None, str], float] = {}  # slot -> newest timestamp seen
        self.rejections: Counter[str] = Counter()  # reason category -> count, for statistics

    def verify(self, raw: object, payload_type: type[P], *, key: str, subkey: str | None, now: float) -> Record[P]:
        """Return the verified record or raise ``RecordRejected`` saying which check failed."""
        public_key, body = _check_envelope(raw, self.policy)
        record: Record[P] = _parse(body, _record_model(payload_type))
        _check_author(record, public_key)
        self._check_header(record, payload_type, key=key, subkey=subkey, now=now)
        check_key_family(record, _HEADER_SIZE + len(body))
        self._check_replay(record, now)
        return record

    def verify_or_none(
        self, raw: object, payload_type: type[P], *, key: str, subkey: str | None, now: float
    ) -> Record[P] | None:
        """Like ``verify``, but log the reason at debug level and return ``None`` on rejection."""
        try:
            return self.verify(raw, payload_type, key=key, subkey=subkey, now=now)
        except RecordRejected as e:
            self.rejections[e.reason.split(":", 1)[0]] += 1
            logger.debug("rejected record at %s/%s: %s", key, subkey, e.reason)
            return None

    def owned(
        self, values: Mapping[str | None, object], payload_type: type[P], *, key: str, now: float
    ) -> tuple[list[Record[P]], int]:
        """The records of ``key``'s slots (subkey -> raw value) that verify and were signed by the slot's
        owner, and how many genuine records sat in another peer's slot: only a slot's owner speaks for it."""
        records: list[Record[P]] = []
        foreign = 0
        for subkey, raw in values.items():
            record = self.verify_or_none(raw, payload_type, key=key, subkey=subkey, now=now)
            if record is None:
                continue
            if record.peer_id != subkey:  # forgeries were refused already; this one is just misplaced
                foreign += 1
                logger.debug("record by %s in slot %s of %s ignored", record.peer_id, subkey, key)
                continue
            records.append(record)
        return records, foreign

    def _check_header(
        self,
        record: Record[P],
        payload_type: type[P],
        *,
        key: str,
        subkey: str | None,
        now: float,
    ) -> None:
        if record.protocol_version < MIN_PROTOCOL_VERSION:
            raise RecordRejected(f"version: protocol {record.protocol_version} < {MIN_PROTOCOL_VERSION}")
        if record.kind != payload_type.KIND:
            raise RecordRejected(f"kind: expected {payload_type.KIND!r}, got {record.kind!r}")
        if record.key != key or record.subkey != subkey:
            raise RecordRejected(f"misplaced: signed for {record.key}/{record.subkey}, found at {key}/{subkey}")
        if record.expires_at <= now:
            raise RecordRejected(f"expired: {now - record.expires_at:.1f}s ago")
        if record.timestamp > now + self.policy.max_clock_skew:
            raise RecordRejected(f"future: timestamp {record.timestamp - now:.1f}s ahead")
        if record.expires_at - record.timestamp > self.policy.max_lifetime:
            raise RecordRejected("lifetime: expiry too far after timestamp")

    def _check_replay(self, record: Record[P], now: float) -> None:
        slot = (record.key, record.subkey, record.peer_id)
        newest = self._newest.get(slot)
        if newest is not None and record.timestamp < newest:
            raise RecordRejected(f"replay: timestamp {record.timestamp} older than seen {newest}")
        if newest is None or record.timestamp > newest:
            self._newest[slot] = record.timestamp
        if len(self._newest) > 4 * 1024 and len(self._newest) % 1024 == 0:
            self._forget_unreplayable(now)

    def _forget_unreplayable(self, now: float) -> None:
        # Any record older than the newest one seen has timestamp < newest, so it expired by
        # newest + max_lifetime at the latest (longer lifetimes are rejected): after that, its slot
        # memory protects nothing. Expiry alone is not enough: an older record may outlive a newer one.
        horizon = now - self.policy.max_lifetime
        self._newest = {slot: seen for slot, seen in self._newest.items() if seen > horizon}
