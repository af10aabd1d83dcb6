"""Records mean one thing to every parser: no duplicate JSON keys, no NaN or infinity, in any record model."""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

import swarmnet
from swarmnet.errors import RecordRejected
from swarmnet.identity import Identity
from swarmnet.records import MAGIC, Payload, RecordHeader, RecordPolicy, RecordVerifier, authenticate_envelope
from swarmnet.version import PROTOCOL_VERSION

NOW = 1_700_000_000.0
KEY = "swarm/test/notes"
ALICE = Identity.generate()
DOMAIN = b"swarmnet-record\x00"


class Note(Payload):
    KIND = "note"
    text: str
    score: float = 0.0
    extras: dict[str, Any] = Field(default_factory=dict)


def body_of(**overrides: Any) -> dict[str, Any]:
    return {
        "protocol_version": PROTOCOL_VERSION,
        "kind": Note.KIND,
        "peer_id": ALICE.peer_id,
        "key": KEY,
        "subkey": ALICE.peer_id,
        "timestamp": NOW - 10.0,
        "expires_at": NOW + 600.0,
        "payload": {"text": "hello"},
        **overrides,
    }


def sealed(text: str) -> bytes:
    """An envelope around exactly ``text`` (no re-serialization), signed by Alice."""
    return MAGIC + ALICE.public_key + ALICE.sign(DOMAIN + text.encode()) + text.encode()


def reason(raw: bytes) -> str | None:
    """``None`` if a reader accepts ``raw``, else its rejection reason; storage nodes must agree."""
    try:
        RecordVerifier().verify(raw, Note, key=KEY, subkey=ALICE.peer_id, now=NOW)
    except RecordRejected as e:
        with pytest.raises(RecordRejected):
            authenticate_envelope(raw, RecordPolicy())
        return e.reason
    return None


# --- duplicate keys ------------------------------------------------------------------------------


def test_the_plain_body_is_accepted() -> None:
    assert reason(sealed(json.dumps(body_of()))) is None


@pytest.mark.parametrize("name", ["kind", "peer_id", "key", "subkey", "timestamp", "expires_at", "payload"])
def test_duplicate_header_key_is_rejected(name: str) -> None:
    text = json.dumps(body_of())
    first = f'"{name}": {json.dumps(body_of()[name])}'
    assert text.count(first) == 1
    assert "duplicate key" in (reason(sealed(text.replace(first, f"{first}, {first}"))) or "")


@pytest.mark.parametrize(
    "payload",
    [
        '{"text": "a", "text": "b"}',
        '{"text": "a", "extras": {"x": 1, "x": 2}}',
        '{"text": "a", "extras": {"deep": [{"y": 1, "y": 1}]}}',
        '{"text": "a", "unknown": {"z": null, "z": null}}',
    ],
    ids=["payload-field", "nested-object", "object-in-array", "ignored-field"],
)
def test_duplicate_key_at_any_depth_is_rejected(payload: str) -> None:
    text = json.dumps(body_of(payload={})).replace('"payload": {}', f'"payload": {payload}')
    assert "duplicate key" in (reason(sealed(text)) or "")


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=16,
)


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _dumps_repeating(value: Any, target: dict[str, Any]) -> str:
    """JSON text of ``value`` in which the first member of the object ``target`` appears twice."""
    if isinstance(value, dict):
        members = [f"{json.dumps(k)}: {_dumps_repeating(v, target)}" for k, v in value.items()]
        if value is target:
            members.append(members[0])
        return "{" + ", ".join(members) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dumps_repeating(v, target) for v in value) + "]"
    return json.dumps(value)


@settings(max_examples=400, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(extra=JSON_VALUES, where=st.integers(0, 1000), field=st.sampled_from(["extras", "unknown", "header"]))
def test_fuzz_every_body_with_a_duplicate_key_is_rejected(extra: Any, where: int, field: str) -> None:
    body = body_of(payload={"text": "hello", field: extra}) if field != "header" else body_of(header=extra)
    objects = [o for o in _objects(body) if o]
    target = objects[where % len(objects)]
    assert "duplicate key" in (reason(sealed(_dumps_repeating(body, target))) or "")


# --- non-finite numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
@pytest.mark.parametrize("where", ["score", "extras", "unknown", "header"])
def test_non_finite_number_anywhere_is_rejected(literal: str, where: str) -> None:
    """In a float field, in a free-form one, in one the model ignores, in an unknown header field."""
    placeholder = 123456.5
    if where == "header":
        fields = body_of(future=[placeholder])
    elif where == "score":
        fields = body_of(payload={"text": "a", "score": placeholder})
    else:
        fields = body_of(payload={"text": "a", where: {"deep": [placeholder]}})
    text = json.dumps(fields)
    assert reason(sealed(text)) is None
    rejected = reason(sealed(text.replace(str(placeholder), literal)))
    assert rejected is not None
    assert rejected.startswith("malformed"), rejected


def _walk(package: str) -> None:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, f"{package}."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def _record_models() -> list[type[Payload] | type[RecordHeader]]:
    _walk("swarmnet")  # reaches the top-level folders through the package's links
    found: list[type[Any]] = [RecordHeader]
    pending: list[type[Any]] = [Payload]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in found and subclass.__module__.startswith("swarmnet."):
                found.append(subclass)
                pending.append(subclass)
    return found


RECORD_MODELS = _record_models()


def test_the_record_models_of_every_package_are_found() -> None:
    names = {model.__name__ for model in RECORD_MODELS}
    assert {"RecordHeader", "PeerInfo", "DeviceInfo", "TelemetryReport", "GroupJoin", "StateAnnouncement"} <= names
    assert swarmnet.__name__ == "swarmnet"


def _float_schemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every float schema and every model schema inside a pydantic core schema."""
    if isinstance(schema, dict):
        if schema.get("type") in ("float", "model"):
            yield schema
        for value in schema.values():
            yield from _float_schemas(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _float_schemas(value)


@pytest.mark.parametrize("model", RECORD_MODELS, ids=lambda m: f"{m.__module__}.{m.__name__}")
def test_no_record_model_accepts_a_non_finite_number(model: type[Payload]) -> None:
    """Every record model (a payload added later is found too) refuses NaN and infinity in every float,
    however nested: its config says so, no field overrides it, and each field refuses a NaN or infinity
    (given alone or in a list) whatever else is missing: an error names that field."""
    assert model.model_config.get("allow_inf_nan") is False
    for schema in _float_schemas(model.__pydantic_core_schema__):
        if schema["type"] == "model":
            assert schema.get("config", {}).get("allow_inf_nan") is False, schema.get("cls")
        else:
            assert schema.get("allow_inf_nan") is not True, schema
    for name in model.model_fields:
        for shape in (math.nan, math.inf, -math.inf, [math.nan], [-math.inf]):
            with pytest.raises(ValidationError) as excinfo:
                model.model_validate({name: shape})
            assert any(error["loc"][:1] == (name,) for error in excinfo.value.errors()), (name, shape)
