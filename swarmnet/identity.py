"""Ed25519 peer identity: one key per peer, persisted with 0600 permissions.

The user-visible peer id is the libp2p peer id of the same key (``12D3KooW...``), so the id
that signs our DHT records is also the id that the libp2p daemon authenticates on every
connection: a caller cannot claim someone else's id in an RPC, and a record's author can be
reached at the id it claims.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from swarmnet.errors import IdentityError

__all__ = ["Identity", "PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "peer_id_from_public_key", "verify_signature"]

logger = logging.getLogger(__name__)

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# libp2p key protobufs: field 1 (KeyType) = 1 (Ed25519), field 2 (bytes) of the given length.
_PB_PUBLIC_PREFIX = bytes([0x08, 0x01, 0x12, PUBLIC_KEY_SIZE])
_PB_PRIVATE_PREFIX = bytes([0x08, 0x01, 0x12, 64])
# An "identity" multihash (code 0x00) wrapping the 36-byte public key protobuf.
_MULTIHASH_PREFIX = bytes([0x00, len(_PB_PUBLIC_PREFIX) + PUBLIC_KEY_SIZE])


def peer_id_from_public_key(public_key: bytes) -> str:
    """Return the libp2p peer id (base58, ``12D3KooW...``) of a raw 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    return base58.b58encode(_MULTIHASH_PREFIX + _PB_PUBLIC_PREFIX + public_key).decode("ascii")


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Check an Ed25519 signature; any malformed input yields ``False``, never an exception."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, eq=False)
class Identity:
    """A peer's Ed25519 key pair and the peer id derived from it."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        """Create a fresh, unsaved identity (for ephemeral clients and tests)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Identity:
        """Load the key at ``path``, creating it (mode 0600, parents 0700) on first start.

        Raises:
            IdentityError: the file exists but is not a valid key, or other users can read it.
        """
        path = Path(path).expanduser()
        if path.exists():
            return cls._load(path)
        identity = cls.generate()
        identity._save(path)
        logger.info("created a new identity %s at %s", identity.peer_id, path)
        return identity

    @classmethod
    def _load(cls, path: Path) -> Identity:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise IdentityError(f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as e:
            raise IdentityError(f"{path} is not a PEM private key: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{path} holds a {type(key).__name__}, expected an Ed25519 key")
        return cls(key)

    def _save(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # O_EXCL: never overwrite a key another process created a moment ago.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def peer_id(self) -> str:
        """The peer id shown to users and used on the network."""
        return peer_id_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message``; returns a 64-byte Ed25519 signature."""
        return self.private_key.sign(message)

    def libp2p_private_key(self) -> bytes:
        """The key as a libp2p ``PrivateKey`` protobuf, the format the p2p daemon's ``-id`` file takes."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return _PB_PRIVATE_PREFIX + seed + self.public_key

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"
