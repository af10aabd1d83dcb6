"""Length-prefixed frames for RPC over byte streams.

A frame is ``kind (1 byte) | length (8 bytes, big-endian) | data``. A call sends DATA frames
and one END; the answer is DATA frames then END, or an ERROR frame with a UTF-8 message.
The length is checked against the limit before anything is read, so a peer announcing a
terabyte frame costs us nine bytes, not an allocation.
"""

from __future__ import annotations

import asyncio
import enum
import struct

from swarmnet.errors import ProtocolError

__all__ = ["FrameKind", "read_frame", "write_frame"]

_HEADER = struct.Struct(">BQ")
_MAX_ERROR_BYTES = 4096


class FrameKind(enum.IntEnum):
    """What a frame carries."""

    DATA = 0  # one message
    END = 1  # the sender has no more messages
    ERROR = 2  # the remote handler failed; data is a short UTF-8 reason


def write_frame(writer: asyncio.StreamWriter, kind: FrameKind, data: bytes = b"") -> None:
    """Queue one frame on ``writer`` (the caller drains)."""
    writer.write(_HEADER.pack(kind, len(data)))
    if data:
        writer.write(data)


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> tuple[FrameKind, bytes]:
    """Read one frame, refusing oversized or unknown ones with ``ProtocolError``."""
    try:
        kind_code, length = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    except asyncio.IncompleteReadError as e:
        raise ProtocolError("stream closed before a frame header") from e
    try:
        kind = FrameKind(kind_code)
    except ValueError:
        raise ProtocolError(f"unknown frame kind {kind_code}") from None
    limit = _MAX_ERROR_BYTES if kind is FrameKind.ERROR else max_bytes
    if length > limit:
        raise ProtocolError(f"{kind.name} frame of {length} bytes exceeds the limit of {limit}")
    try:
        return kind, await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise ProtocolError(f"stream closed inside a {length}-byte frame") from e
