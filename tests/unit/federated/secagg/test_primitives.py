"""The PRG, X25519 agreement and share encryption."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from swarmnet.errors import ProtocolError
from swarmnet.federated.secagg import KeyPair, agree, decrypt_share, encrypt_share, expand_mask
from swarmnet.federated.secagg.keys import MASK_PURPOSE

SEED = bytes(range(32))


def test_mask_is_the_chacha20_keystream_as_little_endian_words() -> None:
    mask = expand_mask(SEED, 1000)
    assert mask.dtype == np.uint32
    assert mask.shape == (1000,)
    assert mask.flags.writeable
    keystream = Cipher(algorithms.ChaCha20(SEED, bytes(16)), mode=None).encryptor().update(bytes(4000))
    assert [int.from_bytes(keystream[i : i + 4], "little") for i in range(0, 16, 4)] == mask[:4].tolist()


def test_mask_is_deterministic_and_prefix_stable() -> None:
    assert np.array_equal(expand_mask(SEED, 100), expand_mask(SEED, 100))
    assert np.array_equal(expand_mask(SEED, 1000)[:100], expand_mask(SEED, 100))
    assert not np.array_equal(expand_mask(bytes(32), 100), expand_mask(SEED, 100))
    assert expand_mask(SEED, 0).shape == (0,)


def test_mask_rejects_bad_seeds() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        expand_mask(b"short", 10)
    with pytest.raises(ValueError, match="length"):
        expand_mask(SEED, -1)


def test_agreement_is_symmetric_and_bound_to_context_and_purpose() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    key = agree(a.private_key, b.public_bytes, b"ctx", MASK_PURPOSE)
    assert len(key) == 32
    assert key == agree(b.private_key, a.public_bytes, b"ctx", MASK_PURPOSE)
    assert key != agree(a.private_key, b.public_bytes, b"ctx2", MASK_PURPOSE)
    assert key != agree(a.private_key, b.public_bytes, b"ctx", b"other")
    # The length prefix keeps context and purpose from sliding into each other.
    assert agree(a.private_key, b.public_bytes, b"ab", b"c") != agree(a.private_key, b.public_bytes, b"a", b"bc")


def test_agreement_rejects_bad_public_keys() -> None:
    private = KeyPair.generate().private_key
    with pytest.raises(ProtocolError, match="32 bytes"):
        agree(private, b"\x01" * 31, b"ctx", MASK_PURPOSE)
    with pytest.raises(ProtocolError, match="low-order"):
        agree(private, bytes(32), b"ctx", MASK_PURPOSE)


def test_key_pair_round_trips_and_is_reproducible() -> None:
    pair = KeyPair.generate()
    assert KeyPair.from_private_bytes(pair.private_bytes()).public_bytes == pair.public_bytes
    assert KeyPair.generate(lambda n: b"\x07" * n).public_bytes == KeyPair.generate(lambda n: b"\x07" * n).public_bytes
    assert pair.private_bytes().hex() not in repr(pair)


def test_share_encryption_round_trips() -> None:
    key = bytes(range(32))
    ciphertext = encrypt_share(key, b"secret share", b"aad")
    assert decrypt_share(key, ciphertext, b"aad") == b"secret share"
    assert encrypt_share(key, b"secret share", b"aad") != ciphertext  # fresh nonce each time


def test_tampered_or_misdirected_ciphertext_is_rejected() -> None:
    key = bytes(range(32))
    ciphertext = bytearray(encrypt_share(key, b"secret share", b"aad"))
    ciphertext[20] ^= 1
    with pytest.raises(ProtocolError, match="authentication"):
        decrypt_share(key, bytes(ciphertext), b"aad")
    good = encrypt_share(key, b"secret share", b"aad")
    with pytest.raises(ProtocolError, match="authentication"):
        decrypt_share(key, good, b"other aad")
    with pytest.raises(ProtocolError, match="authentication"):
        decrypt_share(bytes(32), good, b"aad")
    with pytest.raises(ProtocolError, match="at least"):
        decrypt_share(key, good[:27], b"aad")
