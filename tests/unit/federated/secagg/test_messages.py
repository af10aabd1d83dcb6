"""Wire messages: round trips, strict parsing, signature and identity checks."""

from __future__ import annotations

import dataclasses
import random

import pytest

from swarmnet.errors import ProtocolError
from swarmnet.federated.secagg import AdvertisedKeys, KeyPair, RevealedShare, ShareBundle, ShareKind
from swarmnet.federated.secagg.shamir import PRIME, SHARE_BYTES
from tests.unit.federated.secagg.simulation import CONTEXT, seeded_identity


def _advert(seed: int = 1) -> AdvertisedKeys:
    return AdvertisedKeys.create(
        seeded_identity(seed), CONTEXT, KeyPair.generate().public_bytes, KeyPair.generate().public_bytes
    )


def test_advertised_keys_round_trip_and_verify() -> None:
    advert = _advert()
    assert AdvertisedKeys.from_bytes(advert.to_bytes()) == advert
    assert advert.verify(CONTEXT)
    assert advert.client_id == seeded_identity(1).peer_id


def test_advertised_keys_are_bound_to_the_round() -> None:
    assert not _advert().verify(CONTEXT + b"x")


def test_a_forged_signature_is_caught() -> None:
    advert = _advert()
    forged = dataclasses.replace(advert, mask_key=KeyPair.generate().public_bytes)
    assert not forged.verify(CONTEXT)
    with pytest.raises(ProtocolError, match=f"{advert.client_id}.*bad signature"):
        forged.check(CONTEXT)


def test_a_client_id_that_does_not_match_the_key_is_caught() -> None:
    impostor = dataclasses.replace(_advert(1), client_id=seeded_identity(2).peer_id)
    assert not impostor.verify(CONTEXT)
    with pytest.raises(ProtocolError, match=f"{seeded_identity(2).peer_id} does not match"):
        impostor.check(CONTEXT)


def test_wrong_key_sizes_fail_verification_without_raising() -> None:
    assert not dataclasses.replace(_advert(), cipher_key=b"short").verify(CONTEXT)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"SAK1",
        random.Random(0).randbytes(200),
        b"XXXX" + _advert().to_bytes()[4:],
        _advert().to_bytes()[:164],  # no client id
        _advert().to_bytes() + b"x" * 200,  # client id too long
        _advert().to_bytes()[:164] + b"\xff\xfe",  # client id not UTF-8
    ],
)
def test_garbage_advertised_keys_are_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        AdvertisedKeys.from_bytes(data)


def test_share_bundle_round_trips() -> None:
    bundle = ShareBundle("alice", "bob", PRIME - 1, 0)
    assert ShareBundle.from_bytes(bundle.to_bytes()) == bundle


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"SSB1",
        b"SSB1\x05ali",  # truncated id
        b"SSB1\x00",  # empty id
        ShareBundle("alice", "bob", 1, 2).to_bytes()[:-1],
        ShareBundle("alice", "bob", 1, 2).to_bytes() + b"\x00",
        b"SSB1\x01a\x01b" + PRIME.to_bytes(SHARE_BYTES, "big") + bytes(SHARE_BYTES),  # share outside the field
        random.Random(1).randbytes(150),
    ],
)
def test_garbage_share_bundles_are_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ShareBundle.from_bytes(data)


@pytest.mark.parametrize("kind", list(ShareKind))
def test_revealed_share_round_trips(kind: ShareKind) -> None:
    share = RevealedShare(kind, 12345)
    assert RevealedShare.from_bytes(share.to_bytes()) == share


@pytest.mark.parametrize(
    "data",
    [
        b"",
        RevealedShare(ShareKind.SEED, 1).to_bytes()[:-1],
        b"SRS1\x09" + bytes(SHARE_BYTES),  # unknown kind
        b"SRS1\x01" + b"\xff" * SHARE_BYTES,  # outside the field
        b"XXXX\x01" + bytes(SHARE_BYTES),
    ],
)
def test_garbage_revealed_shares_are_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        RevealedShare.from_bytes(data)
