"""The ``Transport`` interface: everything the protocol core needs from a network.

Keys and methods are plain strings; values and messages are bytes. Authenticity of values is
the records layer's job (``swarmnet.records``), not the transport's: a DHT may return anything.
RPC callers, however, are authenticated: the ``caller`` a handler receives is the peer id the
transport proved (libp2p does this with the peer's key on every connection).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from swarmnet.clock import Clock

__all__ = ["StoredValue", "StreamHandler", "Transport", "TransportLimits", "UnaryHandler"]

UnaryHandler = Callable[[str, bytes], Awaitable[bytes]]
"""``async handler(caller_peer_id, request) -> response``."""

StreamHandler = Callable[[str, AsyncIterator[bytes]], AsyncIterator[bytes]]
"""``handler(caller_peer_id, requests) -> responses``: an async generator over the request stream."""


@dataclass(frozen=True)
class StoredValue:
    """A DHT value and the absolute time (``Clock.time()``) at which it expires."""

    value: bytes
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class TransportLimits:
    """Sizes and deadlines every transport enforces, so a peer cannot make us allocate or wait forever."""

    max_message_bytes: int = 64 * 1024 * 1024  # one RPC message; larger ones are refused before reading
    max_value_bytes: int = 64 * 1024  # one DHT value; records are small, bulk data goes over RPC
    default_timeout: float = 30.0  # seconds an RPC (or a stream's next message) may take by default

    def validate(self) -> None:
        """Raise ``ConfigError`` if a limit is not positive."""
        from swarmnet.errors import ConfigError

        if self.max_message_bytes <= 0 or self.max_value_bytes <= 0 or self.default_timeout <= 0:
            raise ConfigError(f"transport limits must be positive: {self}")


class Transport(ABC):
    """A peer's view of the swarm: a DHT with expiring (sub)keys, and RPC to other peers.

    Implementations: ``HivemindTransport`` (real libp2p) and ``MemoryTransport`` (simulation).
    A transport is an async context manager; leaving it calls ``shutdown()``.
    """

    @property
    @abstractmethod
    def peer_id(self) -> str:
        """This peer's id (the libp2p id of its Ed25519 key)."""

    @property
    @abstractmethod
    def clock(self) -> Clock:
        """The clock that DHT expiry times are measured in."""

    @property
    @abstractmethod
    def limits(self) -> TransportLimits:
        """The size and time limits this transport enforces."""

    @abstractmethod
    async def store(self, key: str, value: bytes, expires_at: float, subkey: str | None = None) -> bool:
        """Store ``value`` under ``key`` (or under ``subkey`` of ``key``) until ``expires_at``.

        As in Kademlia, a value only replaces one with an earlier expiry. Returns whether
        the DHT accepted it; never raises for network trouble (returns ``False``).
        """

    @abstractmethod
    async def get(self, key: str) -> dict[str | None, StoredValue]:
        """Return the live values under ``key``: ``{None: v}`` for a plain value, ``{subkey: v}``
        for a dictionary value, ``{}`` if nothing is found or the lookup failed."""

    @abstractmethod
    async def add_unary_handler(self, method: str, handler: UnaryHandler) -> None:
        """Serve ``method`` with a request/response handler."""

    @abstractmethod
    async def add_stream_handler(self, method: str, handler: StreamHandler) -> None:
        """Serve ``method`` with a bidirectional streaming handler."""

    @abstractmethod
    async def call_unary(self, peer_id: str, method: str, request: bytes, *, timeout: float | None = None) -> bytes:
        """Call ``method`` on ``peer_id`` and return its response.

        Raises:
            RequestTimeout: no answer within ``timeout`` (default ``limits.default_timeout``).
            PeerUnreachable: the peer cannot be contacted.
            RemotePeerError: the remote handler failed.
            ProtocolError: the answer broke the wire protocol (e.g. it was oversized).
        """

    @abstractmethod
    def call_stream(
        self, peer_id: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Open a bidirectional stream: send ``requests`` while yielding the peer's responses.

        ``timeout`` bounds the wait for each next response. Errors as in ``call_unary``.
        Closing the generator early (``aclose()``) cancels the call on both sides.
        """

    @abstractmethod
    async def visible_addresses(self) -> list[str]:
        """Multiaddrs other peers can use to reach this one (empty for in-memory peers)."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Stop serving and release every resource (processes, sockets, tasks). Idempotent.

        Afterwards every other operation raises ``TransportClosed``.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()
