"""The remote-call wire format: a small JSON header followed by codec payloads.

A message is ``b"SRM1" | u32 header length | header (UTF-8 JSON) | payload 0 | payload 1 | ...``, where
each payload is a self-describing compressed tensor (``swarmnet.compression``). The header lists each
payload's byte length, shape and dtype, so a receiver checks every size against its limits before it
decodes anything, and decodes each payload with exactly that shape as its bound.

Requests carry ``{"uid", "op": "forward" | "backward", "codec", "tensors": [...]}`` (``codec`` is the
codec of the reply); replies carry ``{"ok": true, "tensors": [...]}`` or ``{"ok": false, "error": reason}``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from swarmnet.compression import decode, get_codec
from swarmnet.compression.base import all_finite
from swarmnet.errors import CodecError, ProtocolError
from swarmnet.remote.config import RequestLimits

__all__ = [
    "METHOD",
    "Reply",
    "Request",
    "TensorMeta",
    "decode_tensors",
    "encode_message",
    "encode_tensors",
    "error_reply",
    "parse_message",
    "parse_reply",
    "parse_request",
]

METHOD = "swarmnet.remote.call/v1"  # the RPC method a module server serves
MAGIC = b"SRM1"
_LENGTH = struct.Struct("<I")
MAX_HEADER_BYTES = 16 * 1024
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
Op = Literal["forward", "backward"]


@dataclass(frozen=True)
class TensorMeta:
    """What the header says of one payload: its size in bytes, and the tensor's shape and dtype."""

    nbytes: int
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Request:
    """A parsed request: header fields and the undecoded payloads."""

    uid: str
    op: Op
    codec: str
    metas: tuple[TensorMeta, ...]
    payloads: tuple[memoryview, ...]


@dataclass(frozen=True)
class Reply:
    """A parsed reply: an error reason, or the undecoded payloads."""

    error: str | None
    metas: tuple[TensorMeta, ...]
    payloads: tuple[memoryview, ...]


def encode_tensors(tensors: Sequence[torch.Tensor], codec: str) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Compress ``tensors`` with ``codec``; return their header entries and payloads."""
    chosen = get_codec(codec)
    metas, payloads = [], []
    for tensor in tensors:
        payload = chosen.encode(tensor.detach())
        dtype = str(tensor.dtype).removeprefix("torch.")
        metas.append({"nbytes": len(payload), "shape": list(tensor.shape), "dtype": dtype})
        payloads.append(payload)
    return metas, payloads


def encode_message(header: dict[str, Any], payloads: Sequence[bytes] = ()) -> bytes:
    """Frame ``header`` (JSON) and ``payloads`` into one message."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return b"".join([MAGIC, _LENGTH.pack(len(head)), head, *payloads])


def parse_message(
    message: bytes, limits: RequestLimits
) -> tuple[dict[str, Any], tuple[TensorMeta, ...], tuple[memoryview, ...]]:
    """Split a message into its header, tensor metadata and payload views; ``ProtocolError`` if any size
    or shape breaks ``limits`` (nothing is decoded here)."""
    if len(message) > limits.max_request_bytes:
        raise ProtocolError(f"message of {len(message)} bytes exceeds the limit of {limits.max_request_bytes}")
    view = memoryview(message)
    if len(view) < len(MAGIC) + _LENGTH.size or bytes(view[:4]) != MAGIC:
        raise ProtocolError("not a remote-module message (bad magic or truncated)")
    (head_len,) = _LENGTH.unpack_from(view, 4)
    start = 4 + _LENGTH.size
    if head_len > MAX_HEADER_BYTES or start + head_len > len(view):
        raise ProtocolError(f"header length {head_len} is too large or past the end of the message")
    try:
        header = json.loads(bytes(view[start : start + head_len]))
    except ValueError:
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    metas = _metas(header.get("tensors", []), limits)
    payloads, offset = [], start + head_len
    for meta in metas:
        payloads.append(view[offset : offset + meta.nbytes])
        offset += meta.nbytes
    if offset != len(view):
        raise ProtocolError(f"payload sizes add up to {offset} bytes but the message has {len(view)}")
    return header, metas, tuple(payloads)


def _metas(entries: object, limits: RequestLimits) -> tuple[TensorMeta, ...]:
    if not isinstance(entries, list) or len(entries) > limits.max_tensors:
        raise ProtocolError(f"'tensors' must be a list of at most {limits.max_tensors} entries")
    metas = []
    for entry in entries:
        try:
            meta = TensorMeta(int(entry["nbytes"]), tuple(int(d) for d in entry["shape"]), str(entry["dtype"]))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("malformed tensor entry (needs nbytes, shape, dtype)") from None
        _check_meta(meta, limits)
        metas.append(meta)
    return tuple(metas)


def _check_meta(meta: TensorMeta, limits: RequestLimits) -> None:
    if meta.dtype not in DTYPES:
        raise ProtocolError(f"dtype {meta.dtype[:32]!r} is not one of {sorted(DTYPES)}")
    if not 1 <= len(meta.shape) <= limits.max_ndim or any(d < 0 for d in meta.shape):
        raise ProtocolError(f"shape {meta.shape[:8]} must have 1 to {limits.max_ndim} non-negative dimensions")
    if meta.shape[0] > limits.max_samples:
        raise ProtocolError(f"{meta.shape[0]} samples exceed the limit of {limits.max_samples}")
    if math.prod(meta.shape) > limits.max_elements:
        raise ProtocolError(f"shape {meta.shape} exceeds the limit of {limits.max_elements} elements")
    if meta.nbytes < 0:
        raise ProtocolError("negative payload size")


def decode_tensors(metas: Sequence[TensorMeta], payloads: Sequence[memoryview]) -> list[torch.Tensor]:
    """Decode each payload, bounded by and checked against its declared shape and dtype; ``ProtocolError``
    (with the codec's reason) for a malformed or non-finite one."""
    tensors = []
    for meta, payload in zip(metas, payloads, strict=True):
        try:
            tensor = decode(payload, math.prod(meta.shape), shape=meta.shape, dtype=DTYPES[meta.dtype])
        except CodecError as e:
            raise ProtocolError(f"bad tensor payload: {e}") from None
        if not all_finite(tensor):
            raise ProtocolError("tensor holds non-finite values (NaN or Inf)")
        tensors.append(tensor)
    return tensors


def parse_request(message: bytes, limits: RequestLimits) -> Request:
    """A request's fields; ``ProtocolError`` for anything malformed or over ``limits``."""
    header, metas, payloads = parse_message(message, limits)
    uid, op, codec = header.get("uid"), header.get("op"), header.get("codec", "none")
    if not isinstance(uid, str) or len(uid) > 128:
        raise ProtocolError("request has no valid 'uid'")
    if op not in ("forward", "backward"):
        raise ProtocolError(f"unknown op {str(op)[:32]!r}")
    if not isinstance(codec, str):
        raise ProtocolError("'codec' must be a codec name")
    return Request(uid, op, codec, metas, payloads)


def parse_reply(message: bytes, limits: RequestLimits) -> Reply:
    """A reply's fields; ``ProtocolError`` for anything malformed or over ``limits``."""
    header, metas, payloads = parse_message(message, limits)
    if header.get("ok") is True:
        return Reply(None, metas, payloads)
    return Reply(str(header.get("error", "no reason given"))[:1024], (), ())


def error_reply(reason: str) -> bytes:
    """A reply that refuses a request, saying why."""
    return encode_message({"ok": False, "error": reason[:1024]})
