"""Shamir t-of-n sharing: any t shares reconstruct, fewer do not."""

from __future__ import annotations

import itertools
import random

import pytest

from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.secagg import combine, split
from swarmnet.federated.secagg.shamir import PRIME

SECRET = bytes(range(32))
XS = [1, 2, 3, 4, 5, 6]


def _rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


@pytest.mark.parametrize("threshold", [1, 2, 4, 6])
def test_any_threshold_shares_reconstruct(threshold: int) -> None:
    shares = split(SECRET, threshold, XS, _rng().randbytes)
    assert set(shares) == set(XS)
    for subset in itertools.combinations(XS, threshold):
        assert combine({x: shares[x] for x in subset}, threshold, len(SECRET)) == SECRET


def test_all_shares_reconstruct_and_are_checked_for_consistency() -> None:
    shares = split(SECRET, 3, XS, _rng().randbytes)
    assert combine(shares, 3, len(SECRET)) == SECRET


def test_fewer_than_threshold_shares_raise() -> None:
    shares = split(SECRET, 4, XS, _rng().randbytes)
    with pytest.raises(ProtocolError, match="need 4 shares"):
        combine({x: shares[x] for x in XS[:3]}, 4, len(SECRET))


def test_fewer_than_threshold_shares_say_nothing_about_the_secret() -> None:
    # Interpolating t - 1 shares as if the threshold were t - 1 gives an unrelated field element,
    # which (with overwhelming probability) does not even fit in the secret's 32 bytes.
    shares = split(SECRET, 4, XS, _rng().randbytes)
    for subset in itertools.combinations(XS, 3):
        with pytest.raises(ProtocolError, match="does not fit"):
            combine({x: shares[x] for x in subset}, 3, len(SECRET))


def test_a_corrupted_share_is_detected_when_there_is_redundancy() -> None:
    shares = split(SECRET, 3, XS, _rng().randbytes)
    shares[5] = (shares[5] + 1) % PRIME
    with pytest.raises(ProtocolError, match="inconsistent"):
        combine(shares, 3, len(SECRET))


def test_out_of_field_shares_are_rejected() -> None:
    shares = split(SECRET, 2, XS, _rng().randbytes)
    shares[1] = PRIME
    with pytest.raises(ProtocolError, match="outside the field"):
        combine(shares, 2, len(SECRET))


@pytest.mark.parametrize("secret", [b"", b"\x00\x00\x01", b"\xff" * 64])
def test_edge_secrets_round_trip(secret: bytes) -> None:
    shares = split(secret, 3, XS, _rng().randbytes)
    assert combine(dict(list(shares.items())[2:5]), 3, len(secret)) == secret


def test_same_randomness_gives_same_shares_and_os_randomness_differs() -> None:
    assert split(SECRET, 3, XS, _rng(7).randbytes) == split(SECRET, 3, XS, _rng(7).randbytes)
    assert split(SECRET, 3, XS) != split(SECRET, 3, XS)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        split(b"x" * 65, 2, XS)
    with pytest.raises(ConfigError, match="threshold"):
        split(SECRET, 7, XS)
    with pytest.raises(ConfigError, match="threshold"):
        split(SECRET, 0, XS)
    with pytest.raises(ConfigError, match="distinct"):
        split(SECRET, 2, [1, 1, 2])
    with pytest.raises(ConfigError, match="distinct"):
        split(SECRET, 2, [0, 1, 2])
