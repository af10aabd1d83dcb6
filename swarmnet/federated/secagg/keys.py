"""X25519 key pairs, key agreement, and the authenticated encryption of Shamir shares.

Each client advertises two X25519 public keys per round: the *cipher* key, from which each pair
of clients derives the symmetric key that encrypts the shares they send each other through the
coordinator, and the *mask* key, from which each pair derives the seed of their pairwise mask.
They are separate because the mask private key is secret-shared (so the coordinator can cancel
a dropped client's masks) and revealing it must not also reveal the share-encryption keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from swarmnet.errors import ProtocolError
from swarmnet.federated.secagg.shamir import RandomBytes

__all__ = [
    "CIPHER_PURPOSE",
    "KEY_BYTES",
    "MASK_PURPOSE",
    "KeyPair",
    "agree",
    "decrypt_share",
    "encrypt_share",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

# HKDF purposes: the same X25519 secret must never key two different things.
MASK_PURPOSE = b"mask"
CIPHER_PURPOSE = b"share-encryption"

_KDF_DOMAIN = b"swarmnet-secagg-kdf\x00"


@dataclass(frozen=True, eq=False)
class KeyPair:
    """An X25519 key pair for one purpose in one round."""

    private_key: X25519PrivateKey

    @classmethod
    def generate(cls, entropy: RandomBytes | None = None) -> KeyPair:
        """A fresh key pair; ``entropy`` (tests only) makes it reproducible."""
        if entropy is None:
            return cls(X25519PrivateKey.generate())
        return cls(X25519PrivateKey.from_private_bytes(entropy(KEY_BYTES)))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KeyPair:
        """Rebuild a key pair from its raw 32-byte private key (e.g. one reconstructed from shares)."""
        if len(raw) != KEY_BYTES:
            raise ValueError(f"an X25519 private key has {KEY_BYTES} bytes, got {len(raw)}")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key, as advertised."""
        return self.private_key.public_key().public_bytes_raw()

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key; only ever secret-shared, never sent in the clear."""
        return self.private_key.private_bytes_raw()

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public_bytes.hex()[:16]}...)"


def agree(private: X25519PrivateKey, peer_public: bytes, context: bytes, purpose: bytes) -> bytes:
    """Derive a 32-byte key shared with the owner of ``peer_public``, for one round and purpose.

    HKDF-SHA256 over the X25519 shared secret, with ``info`` binding the round ``context`` and the
    ``purpose``, so keys from different rounds or for different uses are independent.

    Raises:
        ProtocolError: ``peer_public`` is not 32 bytes, or is a low-order point (all-zero secret).
    """
    if len(peer_public) != KEY_BYTES:
        raise ProtocolError(f"an X25519 public key has {KEY_BYTES} bytes, got {len(peer_public)}")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as e:
        raise ProtocolError("X25519 key agreement failed: the peer's public key is a low-order point") from e
    # Length-prefix the context so that no (context, purpose) pair can collide with another.
    info = _KDF_DOMAIN + len(context).to_bytes(4, "big") + context + purpose
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def encrypt_share(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt with ChaCha20-Poly1305 under a fresh random nonce; returns ``nonce | ciphertext | tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def decrypt_share(key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Decrypt what ``encrypt_share`` produced with the same key and ``aad``.

    Raises:
        ProtocolError: the ciphertext is truncated, or was tampered with, or was made for another
            key or ``aad`` (another pair of clients or another round).
    """
    if len(ciphertext) < NONCE_BYTES + TAG_BYTES:
        raise ProtocolError(f"an encrypted share has at least {NONCE_BYTES + TAG_BYTES} bytes, got {len(ciphertext)}")
    nonce, body = ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:]
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, body, aad)
    except InvalidTag as e:
        raise ProtocolError("an encrypted share failed authentication (tampered, or not meant for us)") from e
