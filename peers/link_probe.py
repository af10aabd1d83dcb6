"""Measure a peer's upload bandwidth by streaming a few MiB to another peer's sink.

Every daemon serves the sink; a new peer measures against a live one and advertises the result
as ``bandwidth_source="measured"``. The figure is a lower bound of our upload speed (it also
includes the other peer's download speed and the path between), which is what averaging and
pipeline placement need to know. A sink refuses probes longer than ``max_accept_bytes`` so that
nobody can use it as a free bandwidth sink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.transport.base import Transport

__all__ = ["LINK_PROBE_METHOD", "LinkProbeConfig", "measure_upload_mbps", "serve_link_probe"]

logger = logging.getLogger(__name__)

LINK_PROBE_METHOD = "swarmnet.link-probe/1"


@dataclass(frozen=True, kw_only=True)
class LinkProbeConfig:
    """Sizes of a link measurement."""

    payload_bytes: int = 4 * 1024 * 1024  # sent per measurement: long enough to leave TCP slow start
    chunk_bytes: int = 256 * 1024  # one stream message
    max_accept_bytes: int = 16 * 1024 * 1024  # the most our sink swallows per probe
    timeout: float = 60.0  # seconds before a measurement is abandoned

    def validate(self) -> None:
        """Raise ``ConfigError`` unless the sizes are consistent."""
        if not 0 < self.chunk_bytes <= self.payload_bytes <= self.max_accept_bytes or self.timeout <= 0:
            raise ConfigError(f"invalid link probe sizes: {self}")


async def serve_link_probe(transport: Transport, config: LinkProbeConfig | None = None) -> None:
    """Serve the sink other peers measure their upload against."""
    config = config or LinkProbeConfig()
    config.validate()

    async def sink(caller: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > config.max_accept_bytes:
                raise ProtocolError(f"link probe longer than {config.max_accept_bytes} bytes")
        logger.debug("link probe from %s: %d bytes", caller, received)
        yield received.to_bytes(8, "big")

    await transport.add_stream_handler(LINK_PROBE_METHOD, sink)


async def measure_upload_mbps(transport: Transport, peer_id: str, config: LinkProbeConfig | None = None) -> float:
    """Stream ``payload_bytes`` to ``peer_id``'s sink and return the achieved rate in Mbit/s.

    Raises the transport's errors if the peer cannot be reached, and ``ProtocolError`` if it
    acknowledges a different amount than was sent.
    """
    config = config or LinkProbeConfig()
    config.validate()
    chunk = bytes(config.chunk_bytes)
    count = config.payload_bytes // config.chunk_bytes

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield chunk

    loop = asyncio.get_running_loop()
    started = loop.time()
    replies = [r async for r in transport.call_stream(peer_id, LINK_PROBE_METHOD, chunks(), timeout=config.timeout)]
    elapsed = loop.time() - started
    sent = count * config.chunk_bytes
    if replies != [sent.to_bytes(8, "big")]:
        raise ProtocolError(f"{peer_id} acknowledged {replies!r} after a {sent}-byte link probe")
    return sent * 8 / max(elapsed, 1e-6) / 1e6
