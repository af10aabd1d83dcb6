"""Every exception swarmnet raises on purpose.

The hierarchy separates a remote peer's fault from a local one, so callers can decide
whether to ban a peer, retry, or stop::

    SwarmnetError
    ├── ConfigError               bad local configuration (our fault, fix and restart)
    ├── KernelError               a kernel got a dtype or device it does not support (a caller bug)
    ├── IdentityError             the local key file is unreadable or has wrong permissions
    ├── TransportError            the network failed us; nobody is necessarily to blame
    │   ├── StartupError          the transport could not start (p2p daemon, bootstrap peers)
    │   ├── TransportClosed       this transport was shut down (or its peer was killed)
    │   ├── PeerUnreachable       the remote peer could not be reached
    │   └── RequestTimeout        the remote peer did not answer in time
    └── RemoteFault               a remote peer misbehaved; safe to drop or ban it
        ├── RemotePeerError       the remote handler raised and told us so
        ├── ProtocolError         a message broke the protocol (framing, sizes, versions)
        │   └── RecordRejected    a DHT record failed verification (forged, stale, ...)
        └── CodecError            a compressed payload failed validation
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConfigError",
    "IdentityError",
    "KernelError",
    "PeerUnreachable",
    "ProtocolError",
    "RecordRejected",
    "RemoteFault",
    "RemotePeerError",
    "RequestTimeout",
    "StartupError",
    "SwarmnetError",
    "TransportClosed",
    "TransportError",
]


class SwarmnetError(Exception):
    """Base class of every error raised on purpose by swarmnet."""


class ConfigError(SwarmnetError, ValueError):
    """A configuration value is invalid; raised by ``Config.validate()``."""


class KernelError(SwarmnetError, TypeError):
    """A fused kernel was called with tensors it does not support (dtype, device, or backend)."""


class IdentityError(SwarmnetError):
    """The local identity key cannot be loaded or is stored unsafely."""


class TransportError(SwarmnetError):
    """A network operation failed for reasons that are not clearly a peer's fault."""


class StartupError(TransportError):
    """The transport could not start: the p2p daemon failed, or no bootstrap peer answered."""


class TransportClosed(TransportError):
    """The transport has been shut down; no further operations are possible."""


class PeerUnreachable(TransportError):
    """The remote peer could not be contacted (dead, partitioned or unknown)."""


class RequestTimeout(TransportError, TimeoutError):
    """The remote peer did not answer before the deadline."""


class RemoteFault(SwarmnetError):
    """A remote peer sent something wrong; drop it from the round, maybe ban it."""


class RemotePeerError(RemoteFault):
    """The remote handler raised an exception and reported it back to us."""


class ProtocolError(RemoteFault):
    """A message violated the wire protocol (bad framing, oversized, wrong version)."""


class RecordRejected(ProtocolError):
    """A DHT record failed verification; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CodecError(RemoteFault, ValueError):
    """A compressed payload is malformed; raised before any large allocation."""
