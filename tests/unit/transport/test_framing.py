"""Framing: malformed or hostile frames are refused before anything large is read or allocated."""

from __future__ import annotations

import asyncio
import struct

import pytest

from swarmnet.errors import ProtocolError
from swarmnet.transport.framing import FrameKind, read_frame

HEADER = struct.Struct(">BQ")


def read(data: bytes, max_bytes: int = 1024, *, eof: bool = True) -> tuple[FrameKind, bytes]:
    async def main() -> tuple[FrameKind, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        return await asyncio.wait_for(read_frame(reader, max_bytes), 1.0)

    return asyncio.run(main())


def test_data_end_and_error_frames_round_trip() -> None:
    assert read(HEADER.pack(FrameKind.DATA, 3) + b"abc") == (FrameKind.DATA, b"abc")
    assert read(HEADER.pack(FrameKind.END, 0)) == (FrameKind.END, b"")
    assert read(HEADER.pack(FrameKind.ERROR, 4) + b"oops") == (FrameKind.ERROR, b"oops")


def test_a_terabyte_frame_is_refused_from_its_header_alone() -> None:
    # Only the 9 header bytes exist: reading the body would hang until the 1 s deadline, allocating
    # would take a terabyte; the limit check must come first.
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        read(HEADER.pack(FrameKind.DATA, 10**12), eof=False)


def test_error_frames_have_their_own_small_limit() -> None:
    with pytest.raises(ProtocolError, match="ERROR frame"):
        read(HEADER.pack(FrameKind.ERROR, 100_000), max_bytes=10**9, eof=False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "before a frame header"),
        (b"\x00\x00\x00", "before a frame header"),
        (HEADER.pack(7, 0), "unknown frame kind 7"),
        (HEADER.pack(FrameKind.DATA, 10) + b"short", "inside a 10-byte frame"),
    ],
)
def test_malformed_streams_raise_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        read(data)
