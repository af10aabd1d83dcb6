"""Both ends of a framed RPC over one byte stream (see ``framing.py``).

The caller writes its requests in a background task while reading responses, so a handler can
answer a long request stream as it goes (bidirectional streaming) without either side's buffer
filling up and deadlocking the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator

from swarmnet.errors import ProtocolError, RemotePeerError, RequestTimeout
from swarmnet.transport.base import StreamHandler, UnaryHandler
from swarmnet.transport.framing import FrameKind, read_frame, write_frame

__all__ = ["call_over_stream", "serve_stream", "unary_as_stream"]

logger = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 1000


async def unary_as_stream(handler: UnaryHandler, caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Adapt a unary handler to the streaming shape: exactly one request in, one response out."""
    items = [item async for item in requests]
    if len(items) != 1:
        raise ProtocolError(f"a unary call carries one request, got {len(items)}")
    yield await handler(caller, items[0])


async def _incoming(reader: asyncio.StreamReader, max_bytes: int) -> AsyncIterator[bytes]:
    while True:
        kind, data = await read_frame(reader, max_bytes)
        if kind is FrameKind.END:
            return
        if kind is FrameKind.ERROR:
            raise ProtocolError("a caller may not send error frames")
        yield data


async def serve_stream(
    handler: StreamHandler, caller: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_bytes: int
) -> None:
    """Run ``handler`` for one incoming stream; report its failure to the caller, never raise."""
    try:
        await _write_all(writer, handler(caller, _incoming(reader, max_bytes)), max_bytes, "response")
    except (ConnectionError, asyncio.IncompleteReadError) as e:
        logger.debug("stream from %s broke: %r", caller, e)
    except Exception as e:
        logger.debug("handler failed for %s: %r", caller, e)
        with contextlib.suppress(ConnectionError, RuntimeError):
            write_frame(writer, FrameKind.ERROR, f"{type(e).__name__}: {e}"[:_MAX_ERROR_CHARS].encode())
            await writer.drain()
    finally:
        writer.close()


async def _write_all(writer: asyncio.StreamWriter, messages: AsyncIterable[bytes], max_bytes: int, what: str) -> None:
    """Frame each message (refusing oversized ones before sending), then END."""
    async for message in messages:
        if len(message) > max_bytes:
            raise ProtocolError(f"{what} of {len(message)} bytes exceeds {max_bytes}")
        write_frame(writer, FrameKind.DATA, message)
        await writer.drain()
    write_frame(writer, FrameKind.END)
    await writer.drain()


async def call_over_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    requests: AsyncIterable[bytes],
    timeout: float,
    max_bytes: int,
) -> AsyncIterator[bytes]:
    """Send ``requests`` and yield responses; ``timeout`` bounds each wait for the next response."""
    sender = asyncio.create_task(_write_all(writer, requests, max_bytes, "request"))
    try:
        while True:
            kind, data = await _next_frame(reader, sender, timeout, max_bytes)
            if kind is FrameKind.END:
                break
            if kind is FrameKind.ERROR:
                raise RemotePeerError(data.decode(errors="replace"))
            yield data
        await sender  # surface a failure to send the rest of the requests
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        writer.close()


async def _next_frame(
    reader: asyncio.StreamReader, sender: asyncio.Task[None], timeout: float, max_bytes: int
) -> tuple[FrameKind, bytes]:
    """Wait for the next frame, but fail at once if sending our requests failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    receiver = asyncio.ensure_future(read_frame(reader, max_bytes))
    try:
        while True:
            waiting = {receiver} if sender.done() else {receiver, sender}
            remaining = max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                return receiver.result()
            if sender in done and (error := sender.exception()) is not None:
                raise error
            if not done:
                raise RequestTimeout(f"no response within {timeout:.1f}s")
    finally:
        if not receiver.done():
            receiver.cancel()
            with contextlib.suppress(BaseException):
                await receiver
