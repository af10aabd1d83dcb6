"""The secure-aggregation messages that travel as opaque bytes through the coordinator.

Three kinds, each framed by a 4-byte magic and parsed strictly (exact lengths, no trailing
bytes), raising ``ProtocolError`` on anything else::

    AdvertisedKeys  b"SAK1" | identity key (32) | cipher key (32) | mask key (32) | signature (64) | client id
    ShareBundle     b"SSB1" | u8 n | sender (n) | u8 m | recipient (m) | mask-key share (66) | seed share (66)
    RevealedShare   b"SRS1" | kind (1) | share (66)

A ``ShareBundle`` is what one client sends another (encrypted, so the coordinator never sees it);
a ``RevealedShare`` is what a client hands the coordinator in the unmasking step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from swarmnet.errors import ProtocolError
from swarmnet.federated.secagg.keys import KEY_BYTES
from swarmnet.federated.secagg.shamir import PRIME, SHARE_BYTES
from swarmnet.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, peer_id_from_public_key, verify_signature

__all__ = ["MAX_CLIENT_ID_BYTES", "AdvertisedKeys", "RevealedShare", "ShareBundle", "ShareKind"]

# Peer ids are ~52 ASCII characters; the bound keeps parsing cheap and fits a u8 length.
MAX_CLIENT_ID_BYTES = 128

_KEYS_MAGIC = b"SAK1"
_BUNDLE_MAGIC = b"SSB1"
_REVEALED_MAGIC = b"SRS1"
# Domain separation: an advertisement signature is never valid as a signature over anything else.
_SIGNING_DOMAIN = b"swarmnet-secagg-keys\x00"
_KEYS_FIXED = len(_KEYS_MAGIC) + PUBLIC_KEY_SIZE + 2 * KEY_BYTES + SIGNATURE_SIZE


@dataclass(frozen=True)
class AdvertisedKeys:
    """One client's round keys, signed by its long-term identity (Bonawitz round 0)."""

    client_id: str  # the peer id; must be the one derived from ``identity_key``
    identity_key: bytes  # Ed25519 public key that signs this advertisement
    cipher_key: bytes  # X25519 public key for encrypting shares between clients
    mask_key: bytes  # X25519 public key for pairwise mask seeds
    signature: bytes  # over context, cipher_key and mask_key; see ``signed_message``

    @classmethod
    def create(cls, identity: Identity, context: bytes, cipher_key: bytes, mask_key: bytes) -> AdvertisedKeys:
        """Sign ``cipher_key`` and ``mask_key`` for the round ``context`` with ``identity``."""
        signature = identity.sign(cls.signed_message(context, cipher_key, mask_key))
        return cls(identity.peer_id, identity.public_key, cipher_key, mask_key, signature)

    @staticmethod
    def signed_message(context: bytes, cipher_key: bytes, mask_key: bytes) -> bytes:
        """The bytes the signature covers (context length-prefixed, so fields cannot shift)."""
        return _SIGNING_DOMAIN + len(context).to_bytes(4, "big") + context + cipher_key + mask_key

    def check(self, context: bytes) -> None:
        """Like ``verify``, but raise ``ProtocolError`` saying which check failed."""
        if not self._sizes_ok():
            raise ProtocolError(f"keys advertised by {self.client_id} have wrong sizes")
        if self.client_id != peer_id_from_public_key(self.identity_key):
            raise ProtocolError(f"client id {self.client_id} does not match its identity key")
        message = self.signed_message(context, self.cipher_key, self.mask_key)
        if not verify_signature(self.identity_key, self.signature, message):
            raise ProtocolError(f"keys advertised by {self.client_id} carry a bad signature for this round")

    def verify(self, context: bytes) -> bool:
        """Whether the signature is valid for ``context`` and ``client_id`` matches ``identity_key``."""
        try:
            self.check(context)
        except ProtocolError:
            return False
        return True

    def to_bytes(self) -> bytes:
        """The wire form; ``from_bytes`` inverts it."""
        if not self._sizes_ok():
            raise ValueError("cannot encode advertised keys of the wrong sizes")
        client_id = self.client_id.encode("utf-8")
        if not 0 < len(client_id) <= MAX_CLIENT_ID_BYTES:
            raise ValueError(f"a client id has 1 to {MAX_CLIENT_ID_BYTES} bytes, got {len(client_id)}")
        return _KEYS_MAGIC + self.identity_key + self.cipher_key + self.mask_key + self.signature + client_id

    def _sizes_ok(self) -> bool:
        sizes = (len(self.identity_key), len(self.cipher_key), len(self.mask_key), len(self.signature))
        return sizes == (PUBLIC_KEY_SIZE, KEY_BYTES, KEY_BYTES, SIGNATURE_SIZE)

    @classmethod
    def from_bytes(cls, data: bytes) -> AdvertisedKeys:
        """Parse the wire form; does not verify the signature (see ``verify``)."""
        if not _KEYS_FIXED < len(data) <= _KEYS_FIXED + MAX_CLIENT_ID_BYTES or not data.startswith(_KEYS_MAGIC):
            raise ProtocolError(f"not an advertised-keys message ({len(data)} bytes)")
        cipher_at = len(_KEYS_MAGIC) + PUBLIC_KEY_SIZE
        mask_at = cipher_at + KEY_BYTES
        signature_at = mask_at + KEY_BYTES
        return cls(
            client_id=_decode_id(data[_KEYS_FIXED:]),
            identity_key=bytes(data[len(_KEYS_MAGIC) : cipher_at]),
            cipher_key=bytes(data[cipher_at:mask_at]),
            mask_key=bytes(data[mask_at:signature_at]),
            signature=bytes(data[signature_at:_KEYS_FIXED]),
        )


@dataclass(frozen=True)
class ShareBundle:
    """The shares one client sends another: of its mask private key and of its self-mask seed."""

    sender: str
    recipient: str
    mask_key_share: int  # share of the sender's X25519 mask private key
    seed_share: int  # share of the sender's self-mask seed b_u

    def to_bytes(self) -> bytes:
        """The (plaintext) wire form; it is always sent encrypted."""
        return (
            _BUNDLE_MAGIC
            + _encode_id(self.sender)
            + _encode_id(self.recipient)
            + _encode_share(self.mask_key_share)
            + _encode_share(self.seed_share)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareBundle:
        """Parse the wire form strictly."""
        if not data.startswith(_BUNDLE_MAGIC):
            raise ProtocolError("not a share bundle")
        offset = len(_BUNDLE_MAGIC)
        sender, offset = _read_id(data, offset)
        recipient, offset = _read_id(data, offset)
        if len(data) != offset + 2 * SHARE_BYTES:
            raise ProtocolError(f"a share bundle for these ids has {offset + 2 * SHARE_BYTES} bytes, got {len(data)}")
        mask_key_share = _decode_share(data[offset : offset + SHARE_BYTES])
        seed_share = _decode_share(data[offset + SHARE_BYTES :])
        return cls(sender, recipient, mask_key_share, seed_share)


class ShareKind(enum.IntEnum):
    """Which secret a revealed share belongs to; a client reveals at most one kind per client."""

    SEED = 1  # of a survivor's self-mask seed b_u: removes its self-mask
    MASK_KEY = 2  # of a dropped client's mask private key: cancels its pairwise masks


@dataclass(frozen=True)
class RevealedShare:
    """One share a client hands the coordinator when unmasking."""

    kind: ShareKind
    value: int

    def to_bytes(self) -> bytes:
        """The wire form; ``from_bytes`` inverts it."""
        return _REVEALED_MAGIC + bytes([self.kind]) + _encode_share(self.value)

    @classmethod
    def from_bytes(cls, data: bytes) -> RevealedShare:
        """Parse the wire form strictly."""
        if len(data) != len(_REVEALED_MAGIC) + 1 + SHARE_BYTES or not data.startswith(_REVEALED_MAGIC):
            raise ProtocolError(f"not a revealed share ({len(data)} bytes)")
        try:
            kind = ShareKind(data[len(_REVEALED_MAGIC)])
        except ValueError as e:
            raise ProtocolError(f"unknown share kind {data[len(_REVEALED_MAGIC)]}") from e
        return cls(kind, _decode_share(data[len(_REVEALED_MAGIC) + 1 :]))


def _encode_share(value: int) -> bytes:
    if not 0 <= value < PRIME:
        raise ValueError("a share value is a field element in [0, PRIME)")
    return value.to_bytes(SHARE_BYTES, "big")


def _decode_share(data: bytes) -> int:
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise ProtocolError("a share value is outside the field")
    return value


def _encode_id(client_id: str) -> bytes:
    raw = client_id.encode("utf-8")
    if not 0 < len(raw) <= MAX_CLIENT_ID_BYTES:
        raise ValueError(f"a client id has 1 to {MAX_CLIENT_ID_BYTES} bytes, got {len(raw)}")
    return bytes([len(raw)]) + raw


def _read_id(data: bytes, offset: int) -> tuple[str, int]:
    if offset >= len(data):
        raise ProtocolError("a share bundle is truncated")
    size = data[offset]
    end = offset + 1 + size
    if size == 0 or size > MAX_CLIENT_ID_BYTES or end > len(data):
        raise ProtocolError(f"a share bundle has a bad client id length {size}")
    return _decode_id(data[offset + 1 : end]), end


def _decode_id(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError("a client id is not valid UTF-8") from e
