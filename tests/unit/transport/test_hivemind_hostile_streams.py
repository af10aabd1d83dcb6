"""A hostile client on the real transport: raw frames a well-behaved caller would never send."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hivemind.p2p import PeerID

from swarmnet.identity import Identity
from swarmnet.transport.framing import FrameKind, read_frame
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

pytestmark = pytest.mark.multiprocess

HEADER = struct.Struct(">BQ")


async def _raw_call(attacker: HivemindTransport, target: str, payload: bytes) -> tuple[FrameKind, bytes]:
    """Open the method with hivemind directly (bypassing our framing) and send ``payload`` as is."""
    _, reader, writer = await attacker._p2p.call_binary_stream_handler(PeerID.from_base58(target), "echo")
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(read_frame(reader, 1 << 20), 10)
    finally:
        writer.close()


async def _scenario() -> None:
    server = await HivemindTransport.create(Identity.generate())
    try:
        initial = tuple(await server.visible_addresses())
        attacker = await HivemindTransport.create(Identity.generate(), HivemindConfig(initial_peers=initial))
        try:
            calls: list[bytes] = []

            async def echo(caller: str, request: bytes) -> bytes:
                calls.append(request)
                return request

            await server.add_unary_handler("echo", echo)
            huge = HEADER.pack(FrameKind.DATA, 10**12)
            kind, reason = await _raw_call(attacker, server.peer_id, huge)
            assert kind is FrameKind.ERROR
            assert b"exceeds the limit" in reason
            kind, reason = await _raw_call(attacker, server.peer_id, HEADER.pack(9, 0))
            assert kind is FrameKind.ERROR
            assert b"unknown frame kind" in reason
            two = HEADER.pack(FrameKind.DATA, 1) + b"a" + HEADER.pack(FrameKind.DATA, 1) + b"b"
            kind, reason = await _raw_call(attacker, server.peer_id, two + HEADER.pack(FrameKind.END, 0))
            assert kind is FrameKind.ERROR
            assert b"one request" in reason
            assert calls == []
            # The server is unharmed and still answers well-formed calls.
            assert await attacker.call_unary(server.peer_id, "echo", b"still here") == b"still here"
        finally:
            await attacker.shutdown()
    finally:
        await server.shutdown()


def test_hostile_frames_get_an_error_and_the_server_carries_on() -> None:
    asyncio.run(_scenario())
