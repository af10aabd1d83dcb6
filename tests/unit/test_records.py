"""``swarmnet.records``: signed, typed DHT records and every reason a reader rejects one."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmnet.errors import ConfigError, ProtocolError, RecordRejected
from swarmnet.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity
from swarmnet.records import (
    MAGIC,
    Payload,
    Record,
    RecordHeader,
    RecordPolicy,
    RecordVerifier,
    authenticate_envelope,
    seal_body,
    sign_record,
)
from swarmnet.version import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION

NOW = 1_700_000_000.0
KEY = "swarm/test/notes"
# The signing domain, replicated here on purpose: a change to it is a wire-format change.
DOMAIN = b"swarmnet-record\x00"
HEADER_SIZE = len(MAGIC) + PUBLIC_KEY_SIZE + SIGNATURE_SIZE

ALICE = Identity.generate()
BOB = Identity.generate()

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Note(Payload):
    KIND = "note"
    text: str


class Tag(Payload):
    """A second kind whose payload also parses as a ``Note`` (so only the kind check tells them apart)."""

    KIND = "tag"
    text: str
    weight: int = 0


# --- helpers -------------------------------------------------------------------------------------


def make(
    identity: Identity = ALICE,
    payload: Payload | None = None,
    *,
    key: str = KEY,
    subkey: str | None = "",
    timestamp: float = NOW - 10.0,
    expires_at: float = NOW + 600.0,
) -> bytes:
    """A genuine record; by default in its author's own peer-id slot."""
    return sign_record(
        identity,
        payload if payload is not None else Note(text="hello"),
        key=key,
        subkey=identity.peer_id if subkey == "" else subkey,
        timestamp=timestamp,
        expires_at=expires_at,
    )


def body_of(identity: Identity = ALICE, **overrides: Any) -> dict[str, Any]:
    """The body ``sign_record`` would build for ``make(identity)``, with ``overrides`` applied."""
    body: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "kind": Note.KIND,
        "peer_id": identity.peer_id,
        "key": KEY,
        "subkey": identity.peer_id,
        "timestamp": NOW - 10.0,
        "expires_at": NOW + 600.0,
        "payload": {"text": "hello"},
    }
    body.update(overrides)
    return body


def raw_envelope(identity: Identity, body: bytes) -> bytes:
    """Sign arbitrary body bytes (not necessarily JSON) exactly as ``seal_body`` frames them."""
    return MAGIC + identity.public_key + identity.sign(DOMAIN + body) + body


def body_bytes(raw: bytes) -> bytes:
    return raw[HEADER_SIZE:]


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    mutable = bytearray(data)
    mutable[index] ^= 1 << bit
    return bytes(mutable)


def prefix(error: RecordRejected) -> str:
    return error.reason.split(":", 1)[0]


def rejection(
    raw: object,
    payload_type: type[Payload] = Note,
    *,
    key: str = KEY,
    subkey: str | None = ALICE.peer_id,
    now: float = NOW,
    verifier: RecordVerifier | None = None,
) -> str:
    """Verify ``raw``, expect a ``RecordRejected`` and return its reason's category."""
    verifier = verifier or RecordVerifier()
    with pytest.raises(RecordRejected) as excinfo:
        verifier.verify(raw, payload_type, key=key, subkey=subkey, now=now)
    return prefix(excinfo.value)


def accept(
    raw: bytes,
    payload_type: type[Payload] = Note,
    *,
    key: str = KEY,
    subkey: str | None = ALICE.peer_id,
    now: float = NOW,
    verifier: RecordVerifier | None = None,
) -> Record[Any]:
    verifier = verifier or RecordVerifier()
    return verifier.verify(raw, payload_type, key=key, subkey=subkey, now=now)


# --- the helpers themselves ----------------------------------------------------------------------


def test_raw_envelope_replicates_seal_body() -> None:
    """Ed25519 is deterministic, so the hand-made envelope must equal ``seal_body``'s byte for byte."""
    body = body_of()
    encoded = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    assert raw_envelope(ALICE, encoded) == seal_body(ALICE, body)
    assert seal_body(ALICE, body) == make()


def test_record_rejected_is_a_protocol_error() -> None:
    error = RecordRejected("forged: x")
    assert isinstance(error, ProtocolError)
    assert error.reason == "forged: x"


# --- acceptance ----------------------------------------------------------------------------------


def test_valid_record_verifies_to_typed_payload() -> None:
    raw = make(payload=Note(text="hi there"))

    record = accept(raw)

    assert isinstance(record.payload, Note)
    assert record.payload.text == "hi there"
    assert record.protocol_version == PROTOCOL_VERSION
    assert record.kind == "note"
    assert record.peer_id == ALICE.peer_id
    assert record.key == KEY
    assert record.subkey == ALICE.peer_id
    assert record.timestamp == NOW - 10.0
    assert record.expires_at == NOW + 600.0


def test_valid_plain_value_verifies() -> None:
    record = accept(make(subkey=None), subkey=None)
    assert record.subkey is None
    assert record.payload == Note(text="hello")


def test_second_kind_verifies_with_its_own_type() -> None:
    record = accept(make(payload=Tag(text="t", weight=3)), Tag)
    assert isinstance(record.payload, Tag)
    assert record.payload.weight == 3
    assert record.kind == "tag"


def test_record_at_policy_limits_is_accepted() -> None:
    policy = RecordPolicy()
    # exactly max_clock_skew in the future, exactly max_lifetime long, expiring just after now
    skewed = make(timestamp=NOW + policy.max_clock_skew, expires_at=NOW + policy.max_clock_skew + 1)
    longest = make(timestamp=NOW - 10.0, expires_at=NOW - 10.0 + policy.max_lifetime)
    last_moment = make(timestamp=NOW - 10.0, expires_at=NOW + 0.001)
    for raw in (skewed, longest, last_moment):
        assert accept(raw).payload.text == "hello"


def test_record_of_exactly_max_bytes_is_accepted() -> None:
    raw = make()
    assert accept(raw, verifier=RecordVerifier(RecordPolicy(max_bytes=len(raw)))).peer_id == ALICE.peer_id
    assert rejection(raw, verifier=RecordVerifier(RecordPolicy(max_bytes=len(raw) - 1))) == "oversized"


def test_newer_protocol_version_is_accepted() -> None:
    raw = seal_body(ALICE, body_of(protocol_version=PROTOCOL_VERSION + 1))
    assert accept(raw).protocol_version == PROTOCOL_VERSION + 1


def test_unknown_fields_are_tolerated() -> None:
    body = body_of(
        future_header_field={"nested": [1, 2, 3]},
        another="x",
        payload={"text": "still readable", "mood": "cheerful", "extras": {"a": None}},
    )
    raw = seal_body(ALICE, body)

    record = accept(raw)

    assert record.payload == Note(text="still readable")
    assert record.peer_id == ALICE.peer_id
    assert record.key == KEY
    assert record.timestamp == NOW - 10.0
    assert not hasattr(record, "future_header_field")
    assert not hasattr(record.payload, "mood")


# --- forged and tampered -------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1, 31, 32, 63])
def test_forged_signature_is_rejected(offset: int) -> None:
    raw = make()
    assert rejection(flip_bit(raw, len(MAGIC) + PUBLIC_KEY_SIZE + offset)) == "forged"


def test_flipped_public_key_is_rejected() -> None:
    assert rejection(flip_bit(make(), len(MAGIC) + 5)) == "forged"


def test_signature_with_another_public_key_is_rejected() -> None:
    raw = make()
    swapped = MAGIC + BOB.public_key + raw[len(MAGIC) + PUBLIC_KEY_SIZE :]
    assert rejection(swapped) == "forged"


def test_tampered_body_is_rejected() -> None:
    raw = make(payload=Note(text="pay alice 10"))
    tampered = raw.replace(b"pay alice 10", b"pay alice 99")
    assert tampered != raw
    assert rejection(tampered) == "forged"


def test_signature_from_another_domain_is_rejected() -> None:
    """A signature over the bare body (no domain prefix) must not verify as a record."""
    body = body_bytes(make())
    raw = MAGIC + ALICE.public_key + ALICE.sign(body) + body
    assert rejection(raw) == "forged"


def test_impersonation_is_rejected() -> None:
    raw = seal_body(ALICE, body_of(BOB, peer_id=BOB.peer_id))
    assert rejection(raw, subkey=BOB.peer_id) == "impersonation"


# --- header checks -------------------------------------------------------------------------------


@pytest.mark.parametrize("expires_at", [NOW, NOW - 0.001, NOW - 3600.0])
def test_expired_record_is_rejected(expires_at: float) -> None:
    assert rejection(make(timestamp=expires_at - 60.0, expires_at=expires_at)) == "expired"


def test_future_timestamp_is_rejected() -> None:
    skew = RecordPolicy().max_clock_skew
    raw = make(timestamp=NOW + skew + 1.0, expires_at=NOW + skew + 100.0)
    assert rejection(raw) == "future"


def test_future_respects_policy_skew() -> None:
    raw = make(timestamp=NOW + 5.0, expires_at=NOW + 100.0)
    assert accept(raw).timestamp == NOW + 5.0
    assert rejection(raw, verifier=RecordVerifier(RecordPolicy(max_clock_skew=1.0))) == "future"


def test_lifetime_beyond_policy_is_rejected() -> None:
    lifetime = RecordPolicy().max_lifetime
    raw = make(timestamp=NOW - 10.0, expires_at=NOW - 10.0 + lifetime + 1.0)
    assert rejection(raw) == "lifetime"
    short = RecordVerifier(RecordPolicy(max_lifetime=60.0))
    assert rejection(make(timestamp=NOW - 10.0, expires_at=NOW + 51.0), verifier=short) == "lifetime"


def test_old_protocol_version_is_rejected() -> None:
    raw = seal_body(ALICE, body_of(protocol_version=MIN_PROTOCOL_VERSION - 1))
    assert rejection(raw) == "version"


def test_wrong_kind_is_rejected() -> None:
    assert rejection(make(payload=Tag(text="t")), Note) == "kind"
    assert rejection(make(payload=Note(text="n")), Tag) == "kind"


def test_kind_forged_in_body_is_rejected() -> None:
    raw = seal_body(ALICE, body_of(kind="tag"))
    assert rejection(raw, Note) == "kind"


@pytest.mark.parametrize(
    ("key", "subkey"),
    [
        ("swarm/test/other", ALICE.peer_id),
        (KEY + "/", ALICE.peer_id),
        (KEY, BOB.peer_id),
        (KEY, None),
        (KEY, ALICE.peer_id + "x"),
    ],
)
def test_record_signed_for_another_slot_is_misplaced(key: str, subkey: str | None) -> None:
    assert rejection(make(), key=key, subkey=subkey) == "misplaced"


def test_plain_value_found_under_a_subkey_is_misplaced() -> None:
    assert rejection(make(subkey=None), subkey=ALICE.peer_id) == "misplaced"


# --- replay --------------------------------------------------------------------------------------


def test_replay_of_older_record_is_rejected_but_rereading_is_fine() -> None:
    verifier = RecordVerifier()
    older = make(payload=Note(text="old"), timestamp=NOW - 20.0)
    newer = make(payload=Note(text="new"), timestamp=NOW - 10.0)

    assert accept(older, verifier=verifier).payload.text == "old"
    assert accept(newer, verifier=verifier).payload.text == "new"
    assert rejection(older, verifier=verifier) == "replay"
    assert accept(newer, verifier=verifier).payload.text == "new"  # the same record, read again
    assert accept(newer, verifier=verifier).payload.text == "new"


def test_replay_memory_is_per_slot_and_author() -> None:
    verifier = RecordVerifier()
    accept(make(timestamp=NOW - 10.0, subkey=None), subkey=None, verifier=verifier)

    # Same author, other key: not a replay.
    other_key = make(timestamp=NOW - 20.0, key="elsewhere", subkey=None)
    assert accept(other_key, key="elsewhere", subkey=None, verifier=verifier).key == "elsewhere"
    # Same slot, other author: not a replay.
    bob = make(BOB, timestamp=NOW - 20.0, subkey=None)
    assert accept(bob, subkey=None, verifier=verifier).peer_id == BOB.peer_id
    # A fresh verifier has no memory.
    assert accept(make(timestamp=NOW - 20.0, subkey=None), subkey=None).timestamp == NOW - 20.0
    # But the same author in the same slot is.
    assert rejection(make(timestamp=NOW - 20.0, subkey=None), subkey=None, verifier=verifier) == "replay"


def test_rejected_record_does_not_advance_replay_memory() -> None:
    verifier = RecordVerifier()
    newer_but_invalid = make(timestamp=NOW - 10.0, expires_at=NOW - 10.0 + RecordPolicy().max_lifetime + 1)
    assert rejection(newer_but_invalid, verifier=verifier) == "lifetime"
    assert accept(make(timestamp=NOW - 20.0), verifier=verifier).timestamp == NOW - 20.0


def test_replay_is_rejected_after_memory_cleanup_when_older_record_outlives_newer() -> None:
    verifier = RecordVerifier()
    long_lived_old = make(payload=Note(text="old"), timestamp=NOW - 100.0, expires_at=NOW + 3600.0)
    short_lived_new = make(payload=Note(text="new"), timestamp=NOW - 50.0, expires_at=NOW + 10.0)
    accept(long_lived_old, verifier=verifier)
    accept(short_lived_new, verifier=verifier)
    later = NOW + 60.0  # the newer record has expired, the older one has not
    assert rejection(long_lived_old, now=later, verifier=verifier) == "replay"

    # Fill the replay memory until it hits the cleanup threshold (a multiple of 1024 above 4096).
    for i in range(5 * 1024 - 1):
        filler = make(key=f"filler/{i}", subkey=None, timestamp=later - 1.0, expires_at=later + 600.0)
        accept(filler, key=f"filler/{i}", subkey=None, now=later, verifier=verifier)

    assert rejection(long_lived_old, now=later, verifier=verifier) == "replay"


# --- size and framing ----------------------------------------------------------------------------


def test_oversized_record_is_rejected() -> None:
    big = make(payload=Note(text="x" * (RecordPolicy().max_bytes + 1)))
    assert rejection(big) == "oversized"
    assert rejection(make(), verifier=RecordVerifier(RecordPolicy(max_bytes=200))) == "oversized"


def test_oversized_garbage_is_rejected_before_parsing() -> None:
    garbage = b"\x00" * (RecordPolicy().max_bytes + 1)
    assert rejection(garbage) == "oversized"


@pytest.mark.parametrize(
    "raw",
    [None, 0, 1.5, "SWR1", ["SWR1"], {"raw": b"x"}],
    ids=["none", "int", "float", "str", "list", "dict"],
)
def test_non_bytes_input_is_malformed(raw: object) -> None:
    assert rejection(raw) == "malformed"


def test_bytes_like_but_not_bytes_is_malformed() -> None:
    raw = make()
    assert rejection(bytearray(raw)) == "malformed"
    assert rejection(memoryview(raw)) == "malformed"
    assert rejection(raw.decode("latin-1")) == "malformed"


@pytest.mark.parametrize("length", [0, 1, len(MAGIC), len(MAGIC) + PUBLIC_KEY_SIZE, HEADER_SIZE - 1, HEADER_SIZE])
def test_truncated_envelope_is_malformed(length: int) -> None:
    assert rejection(make()[:length]) == "malformed"


def test_truncated_body_is_rejected() -> None:
    raw = make()
    assert rejection(raw[: HEADER_SIZE + 1]) == "forged"
    assert rejection(raw[:-1]) == "forged"


@pytest.mark.parametrize("magic", [b"SWR0", b"SWR2", b"swr1", b"\x00\x00\x00\x00", b"RWS1"])
def test_bad_magic_is_malformed(magic: bytes) -> None:
    raw = make()
    assert rejection(magic + raw[len(MAGIC) :]) == "malformed"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{",
        b'{"protocol_version":1',
        b"\xff\xfe\x00garbage",
        b'{"kind":"\xff"}',
        b"[]",
        b"null",
        b"42",
        b'"a string"',
        b'{"payload":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b" ",
    ],
    ids=[
        "text",
        "open-brace",
        "unterminated",
        "binary",
        "invalid-utf8",
        "array",
        "null",
        "number",
        "string",
        "deeply-nested",
        "whitespace",
    ],
)
def test_validly_signed_non_record_body_is_malformed(body: bytes) -> None:
    assert rejection(raw_envelope(ALICE, body)) == "malformed"


@pytest.mark.parametrize("field", ["protocol_version", "kind", "peer_id", "key", "timestamp", "expires_at", "payload"])
def test_body_missing_a_field_is_malformed(field: str) -> None:
    body = body_of()
    del body[field]
    assert rejection(seal_body(ALICE, body)) == "malformed"


def test_payload_missing_a_field_is_malformed() -> None:
    assert rejection(seal_body(ALICE, body_of(payload={}))) == "malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("protocol_version", "one"),
        ("protocol_version", -1),
        ("protocol_version", 1.5),
        ("protocol_version", None),
        ("kind", 5),
        ("kind", None),
        ("kind", "k" * 65),
        ("peer_id", None),
        ("peer_id", ["x"]),
        ("key", {"k": "v"}),
        ("key", 7),
        ("key", "k" * 513),
        ("subkey", 3),
        ("subkey", ["a"]),
        ("timestamp", "soon"),
        ("timestamp", None),
        ("timestamp", [1.0]),
        ("expires_at", "never"),
        ("expires_at", {}),
        ("payload", "text"),
        ("payload", None),
        ("payload", [1, 2]),
        ("payload", {"text": 5}),
        ("payload", {"text": None}),
        ("payload", {"text": ["a"]}),
    ],
)
def test_wrong_field_type_is_malformed(field: str, value: object) -> None:
    body = body_of()
    body[field] = value
    assert rejection(seal_body(ALICE, body)) == "malformed"


def test_malformed_reason_names_the_field() -> None:
    with pytest.raises(RecordRejected) as excinfo:
        accept(seal_body(ALICE, body_of(timestamp="soon")))
    assert "timestamp" in excinfo.value.reason


@pytest.mark.parametrize("field", ["timestamp", "expires_at"])
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
def test_non_finite_time_is_malformed(field: str, literal: bytes) -> None:
    placeholder = 123456789.25
    fields = body_of()
    fields[field] = placeholder
    body = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
    assert body.count(b"123456789.25") == 1
    crafted = body.replace(b"123456789.25", literal)

    assert rejection(raw_envelope(ALICE, crafted)) == "malformed"
    with pytest.raises(RecordRejected, match=r"^malformed"):
        authenticate_envelope(raw_envelope(ALICE, crafted), RecordPolicy())


# --- verify_or_none ------------------------------------------------------------------------------


def test_verify_or_none_returns_record_when_valid() -> None:
    verifier = RecordVerifier()
    record = verifier.verify_or_none(make(), Note, key=KEY, subkey=ALICE.peer_id, now=NOW)
    assert record is not None
    assert record.payload.text == "hello"
    assert sum(verifier.rejections.values()) == 0


def test_verify_or_none_logs_and_counts_rejections(caplog: pytest.LogCaptureFixture) -> None:
    verifier = RecordVerifier()
    forged = flip_bit(make(), HEADER_SIZE - 1)
    expired = make(timestamp=NOW - 100.0, expires_at=NOW - 1.0)

    with caplog.at_level(logging.DEBUG, logger="swarmnet.records"):
        assert verifier.verify_or_none(forged, Note, key=KEY, subkey=ALICE.peer_id, now=NOW) is None
        assert verifier.verify_or_none(expired, Note, key=KEY, subkey=ALICE.peer_id, now=NOW) is None
        assert verifier.verify_or_none(b"", Note, key=KEY, subkey=ALICE.peer_id, now=NOW) is None
        assert verifier.verify_or_none(make(), Note, key="other", subkey=None, now=NOW) is None
        assert verifier.verify_or_none(forged, Note, key=KEY, subkey=ALICE.peer_id, now=NOW) is None

    assert verifier.rejections == {"forged": 2, "expired": 1, "malformed": 1, "misplaced": 1}
    messages = [r.getMessage() for r in caplog.records if r.name == "swarmnet.records"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "swarmnet.records")
    assert len(messages) == 5
    assert any("forged" in m and KEY in m for m in messages)
    assert any("expired" in m for m in messages)
    assert any("misplaced" in m and "other" in m for m in messages)


# --- policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        RecordPolicy(max_bytes=HEADER_SIZE - 1),
        RecordPolicy(max_clock_skew=-1.0),
        RecordPolicy(max_lifetime=0.0),
        RecordPolicy(max_lifetime=-5.0),
    ],
)
def test_invalid_policy_is_refused(policy: RecordPolicy) -> None:
    with pytest.raises(ConfigError):
        policy.validate()
    with pytest.raises(ConfigError):
        RecordVerifier(policy)


def test_default_policy_is_valid() -> None:
    RecordPolicy().validate()
    assert RecordVerifier().policy == RecordPolicy()


# --- authenticate_envelope -----------------------------------------------------------------------


def test_authenticate_envelope_returns_header() -> None:
    header = authenticate_envelope(make(payload=Tag(text="t")), RecordPolicy())
    assert isinstance(header, RecordHeader)
    assert header.peer_id == ALICE.peer_id
    assert header.kind == "tag"
    assert header.key == KEY
    assert header.subkey == ALICE.peer_id
    assert header.expires_at == NOW + 600.0


def test_authenticate_envelope_rejects_forgery_and_impersonation() -> None:
    policy = RecordPolicy()
    with pytest.raises(RecordRejected, match=r"^forged"):
        authenticate_envelope(flip_bit(make(), HEADER_SIZE + 3), policy)
    with pytest.raises(RecordRejected, match=r"^impersonation"):
        authenticate_envelope(seal_body(ALICE, body_of(BOB)), policy)
    with pytest.raises(RecordRejected, match=r"^malformed"):
        authenticate_envelope(b"SWR1", policy)
    with pytest.raises(RecordRejected, match=r"^malformed"):
        authenticate_envelope("SWR1", policy)
    with pytest.raises(RecordRejected, match=r"^oversized"):
        authenticate_envelope(make(), RecordPolicy(max_bytes=HEADER_SIZE + 1))


# --- fuzzing -------------------------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes_only_raise_record_rejected(raw: bytes) -> None:
    with pytest.raises(RecordRejected):
        RecordVerifier().verify(raw, Note, key=KEY, subkey=ALICE.peer_id, now=NOW)


@FUZZ
@given(tail=st.binary(max_size=4096))
def test_fuzz_bytes_after_magic_only_raise_record_rejected(tail: bytes) -> None:
    with pytest.raises(RecordRejected):
        RecordVerifier().verify(MAGIC + tail, Note, key=KEY, subkey=ALICE.peer_id, now=NOW)
    with pytest.raises(RecordRejected):
        RecordVerifier().verify(MAGIC + ALICE.public_key + tail, Note, key=KEY, subkey=ALICE.peer_id, now=NOW)


@FUZZ
@given(body=st.binary(max_size=2048))
def test_fuzz_validly_signed_arbitrary_body_only_raises_record_rejected(body: bytes) -> None:
    raw = raw_envelope(ALICE, body)
    with pytest.raises(RecordRejected):
        RecordVerifier().verify(raw, Note, key=KEY, subkey=ALICE.peer_id, now=NOW)
    with pytest.raises(RecordRejected):
        authenticate_envelope(raw, RecordPolicy())


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = ["protocol_version", "kind", "peer_id", "key", "subkey", "timestamp", "expires_at", "payload"]


@FUZZ
@given(field=st.sampled_from([*FIELDS, "extra"]), value=JSON_VALUES, drop=st.booleans())
def test_fuzz_signed_json_bodies_verify_or_raise_record_rejected(field: str, value: object, drop: bool) -> None:
    body = body_of()
    if drop and field in body:
        del body[field]
    else:
        body[field] = value
    raw = seal_body(ALICE, body)
    verifier = RecordVerifier()
    record = verifier.verify_or_none(raw, Note, key=KEY, subkey=ALICE.peer_id, now=NOW)
    if record is None:
        assert sum(verifier.rejections.values()) == 1
    else:
        # Whatever got through is what the checks promise.
        assert record.peer_id == ALICE.peer_id
        assert record.kind == Note.KIND
        assert record.key == KEY
        assert record.subkey == ALICE.peer_id
        assert record.expires_at > NOW
        assert isinstance(record.payload, Note)


def test_every_single_bit_flip_is_rejected() -> None:
    raw = make()
    verifier = RecordVerifier()
    reasons: dict[str, int] = {}
    for index in range(len(raw)):
        for bit in range(8):
            reason = rejection(flip_bit(raw, index, bit), verifier=verifier)
            expected = "malformed" if index < len(MAGIC) else "forged"
            assert reason == expected, (index, bit, reason)
            reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == {"malformed": 8 * len(MAGIC), "forged": 8 * (len(raw) - len(MAGIC))}
    assert accept(raw, verifier=verifier).payload.text == "hello"  # the original is still fine


def test_every_truncation_is_rejected() -> None:
    raw = make()
    for length in range(len(raw)):
        reason = rejection(raw[:length])
        assert reason == ("malformed" if length <= HEADER_SIZE else "forged"), (length, reason)


def test_appended_junk_is_rejected() -> None:
    raw = make()
    rng = random.Random(1234)
    junks = [b"\x00", b" ", b"\n", b"}", b"{}", b'"', *(rng.randbytes(rng.randint(1, 200)) for _ in range(200))]
    for junk in junks:
        assert rejection(raw + junk) == "forged", junk


def test_random_multi_byte_mutations_are_rejected() -> None:
    raw = make()
    rng = random.Random(5678)
    for _ in range(500):
        mutant = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            mutant[rng.randrange(len(mutant))] = rng.randrange(256)
        if bytes(mutant) == raw:
            continue
        assert rejection(bytes(mutant)) in {"malformed", "forged"}
