"""The pseudorandom generator that expands a 32-byte seed into a mask vector.

The mask is the ChaCha20 keystream read as little-endian uint32 words, so a client and the
coordinator expand the same seed to the same vector on any platform. The nonce is fixed at zero:
that is safe because every seed is used for exactly one mask (seeds are fresh per round, and
pairwise seeds come out of HKDF with a round- and purpose-specific ``info``, see ``keys.agree``).
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from swarmnet.federated.secagg.field import U32Array

__all__ = ["SEED_BYTES", "expand_mask"]

SEED_BYTES = 32

# cryptography's ChaCha20 takes a 16-byte nonce: a 4-byte block counter, then the 12-byte nonce.
_NONCE = bytes(16)
# The 32-bit block counter bounds one keystream to 2^32 blocks of 64 bytes.
_MAX_LENGTH = 2**32 * 64 // 4


def expand_mask(seed: bytes, length: int) -> U32Array:
    """Expand ``seed`` (32 bytes) into ``length`` pseudorandom uint32 values."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a mask seed has {SEED_BYTES} bytes, got {len(seed)}")
    if not 0 <= length <= _MAX_LENGTH:
        raise ValueError(f"mask length must be in [0, {_MAX_LENGTH}], got {length}")
    encryptor = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    # Encrypting zeros yields the raw keystream; one call, no per-element Python work.
    keystream = encryptor.update(bytes(4 * length))
    # astype copies into a writable, native-endian array (frombuffer over bytes is read-only).
    return np.frombuffer(keystream, dtype="<u4").astype(np.uint32)
