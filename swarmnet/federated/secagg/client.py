"""One client's side of one secure-aggregation round.

The coordinator drives the client through four steps, one method each, in this order::

    advertise()            -> AdvertisedKeys          (round 0: publish keys)
    share_keys(roster)     -> {to: ciphertext}        (round 1: secret-share mask key and seed)
    mask(x, shares_in)     -> masked vector y         (round 2: submit masked input)
    unmask(U3, U2 \\ U3)    -> {about: share bytes}    (round 3: help remove masks)

A new ``SecAggClient`` is made for every round: keys, seed and shares are never reused.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence

import numpy as np

from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.secagg.field import U32Array
from swarmnet.federated.secagg.keys import (
    CIPHER_PURPOSE,
    MASK_PURPOSE,
    KeyPair,
    agree,
    decrypt_share,
    encrypt_share,
)
from swarmnet.federated.secagg.masking import pairwise_masks
from swarmnet.federated.secagg.messages import AdvertisedKeys, RevealedShare, ShareBundle, ShareKind
from swarmnet.federated.secagg.prg import SEED_BYTES, expand_mask
from swarmnet.federated.secagg.roster import Roster
from swarmnet.federated.secagg.shamir import RandomBytes, split
from swarmnet.identity import Identity

__all__ = ["SecAggClient"]


class _Stage(enum.Enum):
    NEW = enum.auto()
    ADVERTISED = enum.auto()
    SHARED = enum.auto()
    MASKED = enum.auto()


class SecAggClient:
    """A client's keys, shares and masking for one round (Bonawitz et al., CCS 2017).

    Every method that takes coordinator-relayed input checks it and raises ``ProtocolError`` on
    anything malformed, forged, or out of order, naming the client at fault where there is one.
    """

    def __init__(
        self, identity: Identity, context: bytes, threshold: int, *, entropy: RandomBytes | None = None
    ) -> None:
        """Create the round's key pairs and self-mask seed.

        Args:
            identity: the client's long-term identity; it signs the round keys.
            context: round-unique bytes (run id, round number, coordinator nonce), bound into every
                signature and key derivation so nothing can be replayed across rounds.
            threshold: t, the number of clients whose shares reconstruct a secret; at least 2.
            entropy: source of random bytes, ``os.urandom`` by default; tests pass a seeded one.
        """
        if not context:
            raise ConfigError("the secure-aggregation context must be non-empty round-unique bytes")
        if threshold < 2:
            raise ConfigError(f"the secure-aggregation threshold must be at least 2, got {threshold}")
        self._identity = identity
        self._context = bytes(context)
        self._threshold = threshold
        self._entropy = entropy if entropy is not None else os.urandom
        self._cipher = KeyPair.generate(entropy)
        self._mask = KeyPair.generate(entropy)
        self._seed = self._entropy(SEED_BYTES)  # b_u
        self._stage = _Stage.NEW
        self._advertised: AdvertisedKeys | None = None
        self._roster: Roster | None = None
        # (share of v's mask private key, share of v's seed) for every v that shared with us, and us.
        self._held: dict[str, tuple[int, int]] = {}
        self._revealed: dict[str, ShareKind] = {}

    @property
    def client_id(self) -> str:
        """This client's peer id."""
        return self._identity.peer_id

    def advertise(self) -> AdvertisedKeys:
        """The round's cipher and mask public keys, signed for this context (idempotent)."""
        if self._advertised is None:
            self._advertised = AdvertisedKeys.create(
                self._identity, self._context, self._cipher.public_bytes, self._mask.public_bytes
            )
            self._stage = _Stage.ADVERTISED
        return self._advertised

    def share_keys(self, roster: Sequence[AdvertisedKeys]) -> dict[str, bytes]:
        """Secret-share the mask private key and seed among the roster; one ciphertext per other client.

        Raises:
            ProtocolError: an entry is forged, duplicated or carries a key unusable for agreement
                (naming the client), this client is missing or has other keys than it advertised,
                or the roster is smaller than the threshold.
        """
        self._require(_Stage.ADVERTISED, "share_keys")
        verified = Roster(roster, self._context)
        me = self.client_id
        if me not in verified:
            raise ProtocolError(f"the roster does not include this client ({me})")
        if verified[me] != self._advertised:
            raise ProtocolError("the roster carries other keys for this client than it advertised")
        if len(verified) < self._threshold:
            raise ProtocolError(f"the roster has {len(verified)} clients, fewer than the threshold {self._threshold}")
        # Every check that can fail comes before any state changes, so a bad roster can be retried.
        keys = {client_id: self._peer_key(verified[client_id]) for client_id in verified.ids if client_id != me}
        xs = [verified.point(client_id) for client_id in verified.ids]
        mask_shares = split(self._mask.private_bytes(), self._threshold, xs, self._entropy)
        seed_shares = split(self._seed, self._threshold, xs, self._entropy)
        ciphertexts: dict[str, bytes] = {}
        for client_id, key in keys.items():
            x = verified.point(client_id)
            bundle = ShareBundle(me, client_id, mask_shares[x], seed_shares[x])
            ciphertexts[client_id] = encrypt_share(key, bundle.to_bytes(), self._context)
        own = verified.point(me)
        self._held[me] = (mask_shares[own], seed_shares[own])
        self._roster = verified
        self._stage = _Stage.SHARED
        return ciphertexts

    def mask(self, vector: U32Array, shares_received: Mapping[str, bytes]) -> U32Array:
        """Store the shares addressed to us and return ``vector`` masked (same shape, uint32).

        The senders of ``shares_received`` are U2 (with us): we add a pairwise mask with each of
        them, so the coordinator must count exactly these clients as having shared keys.

        Raises:
            ProtocolError: a share is not from another roster client, fails decryption, or names
                the wrong sender or recipient (naming the sender); or U2 is below the threshold.
        """
        self._require(_Stage.SHARED, "mask")
        roster = self._roster
        assert roster is not None  # share_keys() sets it on the way to SHARED
        if vector.dtype != np.uint32:
            raise ValueError(f"mask() takes a quantized uint32 vector, got {vector.dtype}")
        received = {sender: self._open_share(roster, sender, ct) for sender, ct in shares_received.items()}
        u2 = {self.client_id, *received}
        if len(u2) < self._threshold:
            raise ProtocolError(f"only {len(u2)} clients shared keys, fewer than the threshold {self._threshold}")
        # Commit only after every share checked out, so a bad one leaves no partial state.
        self._held.update(received)
        flat = vector.reshape(-1)
        peers = {client_id: roster[client_id].mask_key for client_id in u2}
        masked = np.add(flat, expand_mask(self._seed, flat.size), dtype=np.uint32)
        masked += pairwise_masks(self.client_id, self._mask.private_key, peers, self._context, flat.size)
        self._stage = _Stage.MASKED
        return masked.reshape(vector.shape)

    def unmask(self, survivors: Sequence[str], dropped: Sequence[str]) -> dict[str, bytes]:
        """Reveal seed shares of ``survivors`` (U3) and mask-key shares of ``dropped`` (U2 \\ U3).

        Each returned value is a ``RevealedShare`` in wire form, keyed by the client it is about;
        this client's own shares are included. May be called again (say, on a retry) with
        consistent lists, but a client whose seed share was revealed never gets its mask-key share
        revealed, nor the reverse: both together would unmask that client's input.

        Raises:
            ProtocolError: fewer survivors than the threshold, a client in both lists (or twice in
                one), this client listed as dropped, a client we hold no shares of, or a request
                contradicting an earlier one.
        """
        self._require(_Stage.MASKED, "unmask")
        alive, gone = set(survivors), set(dropped)
        if len(alive) != len(survivors) or len(gone) != len(dropped):
            raise ProtocolError("the unmask request names a client twice in one list")
        if both := alive & gone:
            raise ProtocolError(f"the unmask request lists {_names(both)} as both surviving and dropped")
        if len(alive) < self._threshold:
            raise ProtocolError(f"only {len(alive)} clients survived, fewer than the threshold {self._threshold}")
        if self.client_id in gone:
            raise ProtocolError("the unmask request lists this client as dropped, but it submitted its input")
        if unknown := (alive | gone) - self._held.keys():
            raise ProtocolError(f"this client holds no shares of {_names(unknown)}")
        wanted = dict.fromkeys(sorted(alive), ShareKind.SEED) | dict.fromkeys(sorted(gone), ShareKind.MASK_KEY)
        if conflict := {c for c, kind in wanted.items() if self._revealed.get(c, kind) != kind}:
            raise ProtocolError(f"refusing to reveal both secrets of {_names(conflict)}")
        self._revealed.update(wanted)
        return {client_id: self._reveal(client_id, kind) for client_id, kind in wanted.items()}

    def _require(self, stage: _Stage, step: str) -> None:
        if self._stage is not stage:
            raise ProtocolError(f"{step}() called out of order: this client is at stage {self._stage.name}")

    def _peer_key(self, peer: AdvertisedKeys) -> bytes:
        """The key encrypting shares between us and ``peer``, after checking both its keys work."""
        try:
            # Only a low-order point fails agreement, whatever our key; finding out now names the
            # culprit, where mask() could only fail halfway through the pairwise masks.
            agree(self._mask.private_key, peer.mask_key, self._context, MASK_PURPOSE)
            return self._share_key(peer)
        except ProtocolError as e:
            raise ProtocolError(f"the keys advertised by {peer.client_id} are unusable: {e}") from e

    def _share_key(self, peer: AdvertisedKeys) -> bytes:
        return agree(self._cipher.private_key, peer.cipher_key, self._context, CIPHER_PURPOSE)

    def _open_share(self, roster: Roster, sender: str, ciphertext: bytes) -> tuple[int, int]:
        if sender == self.client_id or sender not in roster:
            raise ProtocolError(f"got a share from {sender}, who is not another client in the roster")
        try:
            bundle = ShareBundle.from_bytes(decrypt_share(self._share_key(roster[sender]), ciphertext, self._context))
        except ProtocolError as e:
            raise ProtocolError(f"the share from {sender} is invalid: {e}") from e
        if (bundle.sender, bundle.recipient) != (sender, self.client_id):
            raise ProtocolError(f"the share relayed from {sender} was sent by {bundle.sender} to {bundle.recipient}")
        return bundle.mask_key_share, bundle.seed_share

    def _reveal(self, client_id: str, kind: ShareKind) -> bytes:
        mask_key_share, seed_share = self._held[client_id]
        value = seed_share if kind is ShareKind.SEED else mask_key_share
        return RevealedShare(kind, value).to_bytes()


def _names(client_ids: set[str]) -> str:
    return ", ".join(sorted(client_ids))
