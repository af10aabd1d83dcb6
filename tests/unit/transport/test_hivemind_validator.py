"""``SwarmnetRecordValidator`` on ``DHTRecord``s built the way a hivemind DHT node builds them."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from hivemind.dht.routing import DHTID
from hivemind.dht.validation import CompositeValidator, DHTRecord, RecordValidatorBase
from hivemind.utils.serializer import MSGPackSerializer

from swarmnet.identity import Identity
from swarmnet.keyspace import FAMILIES, MEMBERSHIP_MAX_LIFETIME, KeyFamily, family_of
from swarmnet.records import MAGIC, Payload, RecordPolicy, seal_body, sign_record
from swarmnet.transport.hivemind_validator import SwarmnetRecordValidator
from swarmnet.version import PROTOCOL_VERSION

NOW = 1_700_000_000.0
KEY = "swarmnet/v1/test/peers"
ALICE = Identity.generate()
BOB = Identity.generate()
# One key of each family, as the packages that own them build it.
EXAMPLE_KEYS = {
    "membership": KEY,
    "telemetry": "swarmnet/v1/test/telemetry",
    "averaging": "swarmnet/v1/avg/run/12/0123456789abcdef01234567",
    "diloco-progress": "run/diloco-progress",
    "diloco-state": "run/diloco-state",
    "remote-module": "swarmnet/v1/mod/run.stage.2/servers",
    "remote-prefix": "swarmnet/v1/mod/run.L.3./uids",
}


class Announce(Payload):
    KIND = "peer_info"
    address: str = "/ip4/127.0.0.1/tcp/1"


def payload_of(kind: str) -> Payload:
    """A payload of ``kind``: the validator checks kinds, not payload schemas (readers do)."""
    stub: type[Announce] = type(f"Stub_{kind}", (Announce,), {"KIND": kind})
    return stub()


def envelope(
    identity: Identity = ALICE,
    *,
    key: str = KEY,
    subkey: str | None = "",
    timestamp: float = NOW - 10.0,
    expires_at: float = NOW + 60.0,
    payload: Payload | None = None,
) -> bytes:
    """A genuine envelope; by default for its author's own peer-id slot, of the key family's kind."""
    family = family_of(key)
    return sign_record(
        identity,
        payload or payload_of(family.kind if family else "peer_info"),
        key=key,
        subkey=identity.peer_id if subkey == "" else subkey,
        timestamp=timestamp,
        expires_at=expires_at,
    )


def dht_record(value: Any, *, key: str = KEY, subkey: Any = None, expiration_time: float = NOW + 60.0) -> DHTRecord:
    """What a hivemind node hands its validator for ``dht.store(key, value, expiration_time, subkey)``."""
    return DHTRecord(
        key=DHTID.generate(source=key).to_bytes(),
        subkey=MSGPackSerializer.dumps(subkey),
        value=MSGPackSerializer.dumps(value),
        expiration_time=expiration_time,
    )


def owned(identity: Identity = ALICE, **envelope_args: Any) -> DHTRecord:
    """A genuine record stored in its author's peer-id slot, with the expiry it was signed for."""
    expires_at = envelope_args.get("expires_at", NOW + 60.0)
    key = envelope_args.get("key", KEY)
    raw = envelope(identity, **envelope_args)
    return dht_record(raw, key=key, subkey=identity.peer_id, expiration_time=expires_at)


def body(identity: Identity = ALICE, **changes: Any) -> dict[str, Any]:
    """A record body for ``identity``'s own membership slot."""
    return {
        "protocol_version": PROTOCOL_VERSION,
        "kind": "peer_info",
        "peer_id": identity.peer_id,
        "key": KEY,
        "subkey": identity.peer_id,
        "timestamp": NOW - 10.0,
        "expires_at": NOW + 60.0,
        "payload": {"address": "/ip4/127.0.0.1/tcp/1"},
        **changes,
    }


def flip_bit(data: bytes, index: int) -> bytes:
    mutable = bytearray(data)
    mutable[index] ^= 1
    return bytes(mutable)


@pytest.fixture
def validator() -> SwarmnetRecordValidator:
    return SwarmnetRecordValidator(clock=lambda: NOW)


# --- genuine records -----------------------------------------------------------------------------


def test_genuine_record_in_owner_slot_is_accepted(validator: SwarmnetRecordValidator) -> None:
    assert validator.validate(owned(ALICE)) is True
    assert validator.validate(owned(BOB)) is True


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_key_family_accepts_its_genuine_records(validator: SwarmnetRecordValidator, family: KeyFamily) -> None:
    key = EXAMPLE_KEYS[family.name]
    assert family_of(key) is family
    longest = owned(ALICE, key=key, timestamp=NOW, expires_at=NOW + family.max_lifetime)
    assert validator.refusal(longest) is None


def test_example_keys_cover_every_family() -> None:
    assert sorted(EXAMPLE_KEYS) == sorted(f.name for f in FAMILIES)


def test_validation_does_not_check_read_time_expiry(validator: SwarmnetRecordValidator) -> None:
    """Expiry is the DHT's business (and readers'); a node keeps serving until expiration_time."""
    old = owned(ALICE, timestamp=1000.0, expires_at=1060.0)
    assert validator.validate(old) is True


# --- forged, misplaced, re-pinned ----------------------------------------------------------------


@pytest.mark.parametrize("index", [len(MAGIC) + 1, len(MAGIC) + 40, len(MAGIC) + 95, 120, -2])
def test_forged_record_is_refused(validator: SwarmnetRecordValidator, index: int) -> None:
    raw = flip_bit(envelope(), index)
    assert validator.validate(dht_record(raw, subkey=ALICE.peer_id)) is False


def test_impersonating_record_is_refused(validator: SwarmnetRecordValidator) -> None:
    raw = seal_body(ALICE, body(BOB))  # signed by Alice, claims to be Bob, aimed at Bob's slot
    assert validator.validate(dht_record(raw, subkey=BOB.peer_id)) is False


def test_wrong_dht_key_is_refused(validator: SwarmnetRecordValidator) -> None:
    genuine = owned(ALICE)
    moved = dataclasses.replace(genuine, key=DHTID.generate(source="swarmnet/v1/other/peers").to_bytes())
    assert validator.validate(moved) is False
    raw_key = dataclasses.replace(genuine, key=KEY.encode())
    assert validator.validate(raw_key) is False


@pytest.mark.parametrize("subkey", ["slot-1", None, 0, b"bytes", BOB.peer_id])
def test_wrong_subkey_is_refused(validator: SwarmnetRecordValidator, subkey: object) -> None:
    raw = envelope()
    assert validator.validate(dht_record(raw, subkey=ALICE.peer_id)) is True
    assert validator.validate(dht_record(raw, subkey=subkey)) is False


@pytest.mark.parametrize("delta", [1.0, 3600.0, 1e9, -1.0, -0.5, 1e-3])
def test_dht_expiration_must_match_signed_expiry(validator: SwarmnetRecordValidator, delta: float) -> None:
    genuine = owned(ALICE)
    repinned = dataclasses.replace(genuine, expiration_time=genuine.expiration_time + delta)
    assert validator.validate(genuine) is True
    assert validator.validate(repinned) is False


def test_genuine_record_in_another_peers_slot_is_refused(validator: SwarmnetRecordValidator) -> None:
    """Alice signs honestly for subkey=Bob's id: it authenticates, but the slot belongs to Bob."""
    raw = envelope(ALICE, subkey=BOB.peer_id)
    assert validator.validate(dht_record(raw, subkey=BOB.peer_id)) is False


@pytest.mark.parametrize("subkey", ["slot-1", "junk-0", "x" * 52])
def test_genuine_record_under_a_subkey_that_is_no_peer_id_is_refused(
    validator: SwarmnetRecordValidator, subkey: str
) -> None:
    raw = envelope(subkey=subkey)
    assert validator.validate(dht_record(raw, subkey=subkey)) is False


@pytest.mark.parametrize("lifetime", [24 * 3600.0, 10 * 365 * 24 * 3600.0])
def test_genuine_plain_value_is_refused(validator: SwarmnetRecordValidator, lifetime: float) -> None:
    """A plain value (no subkey) replaces a key's whole dictionary in hivemind: no family holds one."""
    raw = envelope(subkey=None, timestamp=NOW, expires_at=NOW + lifetime)
    assert validator.validate(dht_record(raw, subkey=None, expiration_time=NOW + lifetime)) is False
    short = envelope(subkey=None, timestamp=NOW, expires_at=NOW + 10.0)
    assert validator.validate(dht_record(short, subkey=None, expiration_time=NOW + 10.0)) is False


# --- key families: kind, lifetime, size ----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_lifetime_beyond_the_family_bound_is_refused(validator: SwarmnetRecordValidator, family: KeyFamily) -> None:
    key = EXAMPLE_KEYS[family.name]
    record = owned(ALICE, key=key, timestamp=NOW, expires_at=NOW + family.max_lifetime + 1.0)
    assert "lifetime" in (validator.refusal(record) or "")


def test_membership_record_living_a_day_is_refused(validator: SwarmnetRecordValidator) -> None:
    record = owned(ALICE, timestamp=NOW, expires_at=NOW + 24 * 3600.0)
    assert validator.validate(record) is False


@pytest.mark.parametrize("ahead", [MEMBERSHIP_MAX_LIFETIME + 3600.0, 10 * 365 * 24 * 3600.0])
def test_record_claiming_a_future_timestamp_cannot_outlive_the_bound(
    validator: SwarmnetRecordValidator, ahead: float
) -> None:
    """A short lifetime after a future timestamp still expires far away: the node's own clock bounds it."""
    record = owned(ALICE, timestamp=NOW + ahead - 60.0, expires_at=NOW + ahead)
    assert "future" in (validator.refusal(record) or "")
    at_bound = NOW + RecordPolicy().max_clock_skew + MEMBERSHIP_MAX_LIFETIME
    assert validator.validate(owned(ALICE, timestamp=at_bound - 60.0, expires_at=at_bound)) is True


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_record_larger_than_the_family_bound_is_refused(validator: SwarmnetRecordValidator, family: KeyFamily) -> None:
    key = EXAMPLE_KEYS[family.name]
    padding = "x" * family.max_bytes
    big = type("Big", (Announce,), {"KIND": family.kind})(address=padding)
    record = owned(ALICE, key=key, payload=big)
    assert "oversized" in (validator.refusal(record) or "")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_record_of_another_kind_is_refused(validator: SwarmnetRecordValidator, family: KeyFamily) -> None:
    key = EXAMPLE_KEYS[family.name]
    other = next(f.kind for f in FAMILIES if f.kind != family.kind)
    record = owned(ALICE, key=key, payload=payload_of(other))
    assert "kind" in (validator.refusal(record) or "")


@pytest.mark.parametrize(
    "key",
    [
        "swarm/test/peers",
        "swarmnet/v1/main/anything",
        "swarmnet/v1/a/b/peers",
        "swarmnet/v1/avg/run/notanumber/schema",
        "a/b/diloco-state",
        "/diloco-state",
        "swarmnet/v1//peers",
        "x" * 200 + "/diloco-state",
    ],
)
def test_keys_the_protocol_does_not_use_are_refused(validator: SwarmnetRecordValidator, key: str) -> None:
    assert family_of(key) is None
    record = owned(ALICE, key=key, payload=Announce())
    assert "unknown key family" in (validator.refusal(record) or "")


# --- strict JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_number_in_the_body_is_refused(validator: SwarmnetRecordValidator, literal: str) -> None:
    text = json.dumps(body(), sort_keys=True).replace('"payload": {', f'"payload": {{"started_at": {literal}, ')
    record = dht_record(seal_body_text(text), subkey=ALICE.peer_id)
    assert "non-finite" in (validator.refusal(record) or "")


@pytest.mark.parametrize(
    ("once", "twice"),
    [
        ('"kind": "peer_info"', '"kind": "telemetry", "kind": "peer_info"'),
        ('"state": "online"', '"state": "left", "state": "online"'),
    ],
    ids=["top-level", "nested"],
)
def test_duplicate_keys_in_the_body_are_refused(validator: SwarmnetRecordValidator, once: str, twice: str) -> None:
    text = json.dumps(body(payload={"state": "online"}))
    assert validator.validate(dht_record(seal_body_text(text), subkey=ALICE.peer_id)) is True
    record = dht_record(seal_body_text(text.replace(once, twice)), subkey=ALICE.peer_id)
    assert "duplicate key" in (validator.refusal(record) or "")


def seal_body_text(text: str) -> bytes:
    """An envelope around exactly ``text``, signed by Alice (``seal_body`` would re-serialize it)."""
    return MAGIC + ALICE.public_key + ALICE.sign(b"swarmnet-record\x00" + text.encode()) + text.encode()


# --- values that are not swarmnet envelopes ------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"hello", 42, "hello", None, [1, 2], {"a": 1}, b"", "SWR1 but a string", bytes(16), b"x" * (1 << 20)],
    ids=["bytes", "int", "str", "none", "list", "dict", "empty", "magic-str", "16-bytes", "1-MiB"],
)
@pytest.mark.parametrize("subkey", [None, "junk-0", ALICE.peer_id, 7], ids=["plain", "junk", "peer", "int"])
def test_non_swarmnet_value_is_refused_anywhere(
    validator: SwarmnetRecordValidator, value: object, subkey: object
) -> None:
    for key in EXAMPLE_KEYS.values():
        assert validator.validate(dht_record(value, key=key, subkey=subkey, expiration_time=NOW + 3600.0)) is False


@pytest.mark.parametrize("value", [MAGIC, MAGIC + b"\x00" * 200, MAGIC + b"junk"])
@pytest.mark.parametrize("subkey", [None, "slot-1", ALICE.peer_id])
def test_magic_prefixed_junk_is_refused_anywhere(
    validator: SwarmnetRecordValidator, value: bytes, subkey: object
) -> None:
    assert validator.validate(dht_record(value, subkey=subkey)) is False


@pytest.mark.parametrize(
    ("value_bytes", "subkey_bytes"),
    [
        (b"\xc1", MSGPackSerializer.dumps(None)),  # 0xc1 is never used in msgpack
        (b"", MSGPackSerializer.dumps(None)),
        (MSGPackSerializer.dumps(b"hello")[:-2], MSGPackSerializer.dumps("slot")),  # truncated
        (MSGPackSerializer.dumps(b"hello"), b"\xc1"),
        (MSGPackSerializer.dumps(b"hello"), b""),
        (MSGPackSerializer.dumps(b"hello") + b"trailing", MSGPackSerializer.dumps(None)),
    ],
    ids=["reserved-byte", "empty", "truncated", "bad-subkey", "empty-subkey", "trailing-bytes"],
)
def test_undeserializable_record_is_refused(
    validator: SwarmnetRecordValidator, value_bytes: bytes, subkey_bytes: bytes
) -> None:
    record = DHTRecord(
        key=DHTID.generate(source=KEY).to_bytes(),
        subkey=subkey_bytes,
        value=value_bytes,
        expiration_time=NOW + 60.0,
    )
    assert validator.validate(record) is False


def test_envelope_not_wrapped_in_msgpack_is_refused(validator: SwarmnetRecordValidator) -> None:
    genuine = owned(ALICE)
    unwrapped = dataclasses.replace(genuine, value=envelope())
    assert validator.validate(unwrapped) is False


def test_oversized_envelope_is_refused() -> None:
    record = owned(ALICE)
    assert SwarmnetRecordValidator(RecordPolicy(max_bytes=200), clock=lambda: NOW).validate(record) is False
    assert SwarmnetRecordValidator(clock=lambda: NOW).validate(record) is True


def test_refusals_are_logged_at_debug(caplog: pytest.LogCaptureFixture, validator: SwarmnetRecordValidator) -> None:
    with caplog.at_level(logging.DEBUG, logger="swarmnet.transport.hivemind_validator"):
        assert validator.validate(dht_record(envelope(ALICE, subkey=BOB.peer_id), subkey=BOB.peer_id)) is False
        assert validator.validate(dht_record(b"junk", subkey=None)) is False
    messages = [r.getMessage() for r in caplog.records if r.name == "swarmnet.transport.hivemind_validator"]
    assert any("own slot" in m for m in messages)
    assert any("not a swarmnet record" in m for m in messages)


# --- hivemind integration points -----------------------------------------------------------------


class OtherValidator(RecordValidatorBase):  # type: ignore[misc]
    def validate(self, record: DHTRecord) -> bool:
        return True


def test_merge_with_another_swarmnet_validator(validator: SwarmnetRecordValidator) -> None:
    assert validator.merge_with(SwarmnetRecordValidator()) is True
    assert validator.merge_with(validator) is True


def test_merge_with_other_validators_is_refused(validator: SwarmnetRecordValidator) -> None:
    other = OtherValidator()
    assert validator.merge_with(other) is False
    assert other.merge_with(validator) is False


def test_composite_validator_keeps_one_swarmnet_validator() -> None:
    composite = CompositeValidator(
        [SwarmnetRecordValidator(clock=lambda: NOW), OtherValidator(), SwarmnetRecordValidator()]
    )
    kinds = [type(v) for v in composite._validators]
    assert kinds.count(SwarmnetRecordValidator) == 1
    assert kinds.count(OtherValidator) == 1
    assert composite.validate(owned(ALICE)) is True
    assert composite.validate(dht_record(b"hello", subkey=ALICE.peer_id)) is False


def test_priority_and_value_passthrough(validator: SwarmnetRecordValidator) -> None:
    record = owned(ALICE)
    assert validator.priority > OtherValidator().priority
    # No signature is added or stripped: the envelope carries its own.
    assert validator.sign_value(record) == record.value
    assert validator.strip_value(record) == record.value
