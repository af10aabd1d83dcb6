"""Wire messages of the averaging protocol: a small validated JSON header, then raw payload bytes.

Frame: ``b"SWA1" | u32 header length | header (UTF-8 JSON) | payload``. The header is parsed into
a pydantic model (unknown fields ignored, so newer peers can add some); the payload is a codec
payload (``swarmnet.compression.wire``) that the receiver validates separately.
"""

from __future__ import annotations

import struct
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarmnet.errors import ProtocolError

__all__ = ["Commit", "DataHeader", "Kind", "method_name", "Propose", "Reply", "decode_message", "encode_message"]

MAGIC = b"SWA1"
_PREFIX = struct.Struct("<4sI")
MAX_HEADER_BYTES = 256 * 1024  # a commit lists every member; 256 KiB is ~2,500 peer ids
MAX_GROUP = 2048
Kind = Literal["part", "tally", "result", "amend", "gather", "ping"]
_GROUP_ID = Field(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$")


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Propose(_Message):
    """Leader -> member: join my group for this run, round and tensor schema?"""

    run: str = Field(max_length=128)
    round_id: int = Field(ge=0)
    schema_id: str = Field(max_length=64)
    group_id: str = _GROUP_ID


class Commit(_Message):
    """Leader -> member: the group is final (``abort``: it is not; you are free again)."""

    group_id: str = _GROUP_ID
    abort: bool = False
    members: tuple[str, ...] = Field(default=(), max_length=MAX_GROUP)
    bandwidths: tuple[float, ...] = Field(default=(), max_length=MAX_GROUP)
    # The group is every peer that sought the round, as the leader saw it: it may meet again without the DHT.
    whole: bool = False


class Reply(_Message):
    """Any answer: accepted, or refused with a reason."""

    ok: bool
    reason: str = Field(default="", max_length=1024)


class DataHeader(_Message):
    """Header of a data message of a formed group.

    ``part``: a sender's slice of the reducer's range (chunk ``chunk`` of ``chunks``), with its weight.
    ``tally``: a reducer's list of accepted contributors (member indices) for this pass.
    ``result``: a reducer's aggregate of its range (chunk of chunks), over ``contributors``.
    ``amend``: a reducer's re-reduced result chunks (empty where the streamed one stands), over ``contributors``.
    ``gather``: a sender's whole sparse vector (all-gather mode), with its weight.
    ``ping``: are you still there? (answered, never stored)
    """

    group_id: str = _GROUP_ID
    kind: Kind
    pass_no: int = Field(default=0, ge=0, le=1)
    chunk: int = Field(default=0, ge=0)
    chunks: int = Field(default=1, ge=1, le=1 << 20)
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    contributors: tuple[int, ...] = Field(default=(), max_length=MAX_GROUP)


M = TypeVar("M", bound=_Message)


def method_name(run: str, verb: str) -> str:
    """The RPC method of ``verb`` for ``run``: each run has its own, so one peer can average several runs."""
    return f"swarmnet.avg.{run}.{verb}"


def encode_message(header: _Message, payload: bytes = b"") -> bytes:
    """Frame ``header`` and ``payload`` into one message."""
    raw = header.model_dump_json().encode()
    return _PREFIX.pack(MAGIC, len(raw)) + raw + payload


def decode_message(message: bytes, model: type[M]) -> tuple[M, memoryview]:
    """Parse a framed message; ``ProtocolError`` for anything malformed. The payload is a zero-copy view."""
    if len(message) < _PREFIX.size:
        raise ProtocolError(f"averaging message of {len(message)} bytes is shorter than its prefix")
    magic, length = _PREFIX.unpack_from(message)
    if magic != MAGIC:
        raise ProtocolError(f"not an averaging message (magic {magic!r})")
    if length > MAX_HEADER_BYTES or _PREFIX.size + length > len(message):
        raise ProtocolError(f"averaging header length {length} is invalid for a {len(message)}-byte message")
    view = memoryview(message)
    try:
        header = model.model_validate_json(bytes(view[_PREFIX.size : _PREFIX.size + length]))
    except ValidationError as e:
        raise ProtocolError(f"malformed {model.__name__}: {e.errors()[0]['msg']}") from None
    return header, view[_PREFIX.size + length :]
