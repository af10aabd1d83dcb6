"""``swarmnet.identity``: key file handling, peer ids, signatures and the libp2p key format."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import base58
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hivemind.p2p import PeerID
from hivemind.proto import crypto_pb2

from swarmnet.errors import IdentityError
from swarmnet.identity import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    Identity,
    peer_id_from_public_key,
    verify_signature,
)

MESSAGE = b"the quick brown fox"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, so only the content can make loading fail."""
    path.write_bytes(data)
    path.chmod(0o600)


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    mutable = bytearray(data)
    mutable[index] ^= 1 << bit
    return bytes(mutable)


# --- key file ------------------------------------------------------------------------------------


def test_load_or_create_creates_private_key_file_and_parent(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "identity.pem"

    identity = Identity.load_or_create(path)

    assert path.is_file()
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert Identity.load_or_create(path).peer_id == identity.peer_id


def test_load_or_create_leaves_an_existing_parent_alone(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o755)

    Identity.load_or_create(parent / "identity.pem")

    assert mode_of(parent) == 0o755
    assert mode_of(parent / "identity.pem") == 0o600


def test_reload_gives_the_same_identity(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    created = Identity.load_or_create(path)
    content = path.read_bytes()

    reloaded = Identity.load_or_create(path)

    assert reloaded.peer_id == created.peer_id
    assert reloaded.public_key == created.public_key
    assert path.read_bytes() == content  # loading never rewrites the key
    assert verify_signature(created.public_key, reloaded.sign(MESSAGE), MESSAGE)


def test_load_or_create_accepts_str_path(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    assert Identity.load_or_create(str(path)).peer_id == Identity.load_or_create(path).peer_id


def test_peer_id_format() -> None:
    identity = Identity.generate()
    assert identity.peer_id.startswith("12D3KooW")
    assert identity.peer_id == peer_id_from_public_key(identity.public_key)
    assert len(identity.public_key) == PUBLIC_KEY_SIZE
    assert identity.peer_id in repr(identity)


def test_generated_identities_differ() -> None:
    ids = {Identity.generate().peer_id for _ in range(8)}
    assert len(ids) == 8


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o700 | 0o004])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "identity.pem"
    Identity.load_or_create(path)
    path.chmod(mode)

    with pytest.raises(IdentityError, match="chmod") as excinfo:
        Identity.load_or_create(path)
    assert str(path) in str(excinfo.value)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    created = Identity.load_or_create(path)
    path.chmod(0o400)
    assert Identity.load_or_create(path).peer_id == created.peer_id


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key at all",
        b"\x00\xff" * 100,
        b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    ],
    ids=["empty", "text", "binary", "bad-pem-body"],
)
def test_garbage_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "identity.pem"
    write_private(path, content)

    with pytest.raises(IdentityError, match="not a PEM private key"):
        Identity.load_or_create(path)
    assert path.read_bytes() == content  # never overwritten


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)

    with pytest.raises(IdentityError, match="expected an Ed25519 key"):
        Identity.load_or_create(path)
    assert path.read_bytes() == pem


def test_encrypted_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    write_private(path, pem)

    with pytest.raises(IdentityError):
        Identity.load_or_create(path)


def test_public_key_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    write_private(path, pem)

    with pytest.raises(IdentityError):
        Identity.load_or_create(path)


def test_save_never_overwrites_an_existing_key(tmp_path: Path) -> None:
    """The O_EXCL path: a second creator racing the first cannot replace its key."""
    path = tmp_path / "identity.pem"
    winner = Identity.load_or_create(path)
    content = path.read_bytes()

    with pytest.raises(FileExistsError):
        Identity.generate()._save(path)

    assert path.read_bytes() == content
    assert Identity.load_or_create(path).peer_id == winner.peer_id


def test_save_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    """O_EXCL also refuses to follow a symlink, so a planted link cannot redirect the key."""
    target = tmp_path / "elsewhere.pem"
    path = tmp_path / "identity.pem"
    path.symlink_to(target)

    with pytest.raises(FileExistsError):
        Identity.generate()._save(path)
    assert not target.exists()


# --- signatures ----------------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    identity = Identity.generate()
    signature = identity.sign(MESSAGE)

    assert len(signature) == SIGNATURE_SIZE
    assert verify_signature(identity.public_key, signature, MESSAGE) is True
    assert verify_signature(identity.public_key, identity.sign(b""), b"") is True


def test_verify_rejects_wrong_key() -> None:
    signer, other = Identity.generate(), Identity.generate()
    assert verify_signature(other.public_key, signer.sign(MESSAGE), MESSAGE) is False


def test_verify_rejects_other_message() -> None:
    identity = Identity.generate()
    assert verify_signature(identity.public_key, identity.sign(MESSAGE), MESSAGE + b".") is False
    assert verify_signature(identity.public_key, identity.sign(MESSAGE), b"") is False


@pytest.mark.parametrize("index", [0, 1, 31, 32, 33, 62, 63])
@pytest.mark.parametrize("bit", [0, 7])
def test_verify_rejects_flipped_signature_bit(index: int, bit: int) -> None:
    identity = Identity.generate()
    signature = flip_bit(identity.sign(MESSAGE), index, bit)
    assert verify_signature(identity.public_key, signature, MESSAGE) is False


def test_verify_rejects_flipped_public_key_bits() -> None:
    identity = Identity.generate()
    signature = identity.sign(MESSAGE)
    for index in range(PUBLIC_KEY_SIZE):
        for bit in range(8):
            assert verify_signature(flip_bit(identity.public_key, index, bit), signature, MESSAGE) is False


@pytest.mark.parametrize(
    ("key_size", "signature_size"),
    [(0, 64), (31, 64), (33, 64), (64, 64), (32, 0), (32, 63), (32, 65), (32, 128), (0, 0)],
)
def test_verify_rejects_wrong_lengths(key_size: int, signature_size: int) -> None:
    identity = Identity.generate()
    signature = identity.sign(MESSAGE)
    public_key = (identity.public_key * 2)[:key_size]
    bad_signature = (signature * 2)[:signature_size]
    assert verify_signature(public_key, bad_signature, MESSAGE) is False


def test_verify_empty_inputs_return_false() -> None:
    assert verify_signature(b"", b"", b"") is False
    assert verify_signature(b"\x00" * PUBLIC_KEY_SIZE, b"\x00" * SIGNATURE_SIZE, b"") is False
    assert verify_signature(b"\xff" * PUBLIC_KEY_SIZE, b"\xff" * SIGNATURE_SIZE, MESSAGE) is False


def test_verify_rejects_truncated_or_extended_signature() -> None:
    identity = Identity.generate()
    signature = identity.sign(MESSAGE)
    assert verify_signature(identity.public_key, signature[:-1], MESSAGE) is False
    assert verify_signature(identity.public_key, signature + b"\x00", MESSAGE) is False


# --- peer ids and the libp2p key format ----------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_peer_id_from_public_key_rejects_wrong_length(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        peer_id_from_public_key(b"\x01" * size)


def test_peer_id_is_identity_multihash_of_public_key_protobuf() -> None:
    identity = Identity.generate()
    raw = base58.b58decode(identity.peer_id)
    protobuf = crypto_pb2.PublicKey.FromString(raw[2:])

    assert raw[:2] == bytes([0x00, len(raw) - 2])  # identity multihash, length of the rest
    assert protobuf.key_type == crypto_pb2.Ed25519
    assert protobuf.data == identity.public_key


def test_libp2p_private_key_matches_hivemind_view() -> None:
    """The ``-id`` key file the p2p daemon gets yields the same peer id as ``identity.peer_id``.

    hivemind's ``PeerID.from_identity`` only understands RSA keys (it DER-decodes the key data),
    so the Ed25519 peer id is rebuilt here from hivemind's own protobufs and ``PeerID`` type,
    following the libp2p spec: identity multihash of the serialized ``PublicKey`` protobuf.
    """
    identity = Identity.generate()
    private = crypto_pb2.PrivateKey.FromString(identity.libp2p_private_key())

    assert private.key_type == crypto_pb2.Ed25519
    assert len(private.data) == 64  # libp2p Ed25519 private key: seed || public key
    seed, public = private.data[:32], private.data[32:]
    assert public == identity.public_key
    reconstructed = Ed25519PrivateKey.from_private_bytes(seed)
    assert (
        reconstructed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        == identity.public_key
    )

    public_pb = crypto_pb2.PublicKey(key_type=crypto_pb2.Ed25519, data=public).SerializeToString()
    hivemind_peer_id = PeerID(bytes([0x00, len(public_pb)]) + public_pb)
    assert hivemind_peer_id.to_base58() == identity.peer_id
    assert PeerID.from_base58(identity.peer_id) == hivemind_peer_id


def test_libp2p_private_key_survives_reload(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    created = Identity.load_or_create(path)
    assert Identity.load_or_create(path).libp2p_private_key() == created.libp2p_private_key()


def test_key_file_is_not_world_readable_under_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        path = tmp_path / "fresh" / "identity.pem"
        Identity.load_or_create(path)
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
