"""Shamir t-of-n secret sharing over the prime field GF(2^521 - 1).

A secret of up to 64 bytes is the constant term of a random polynomial of degree ``t - 1``; a
share is the polynomial's value at a public, nonzero point ``x``. Any ``t`` shares determine the
polynomial (Lagrange interpolation at 0); ``t - 1`` shares are consistent with every secret, so
they reveal nothing. The Mersenne prime 2^521 - 1 is the smallest convenient prime above 2^512,
so any 64-byte secret is a field element without reduction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from swarmnet.errors import ConfigError, ProtocolError

__all__ = ["MAX_SECRET_BYTES", "PRIME", "SHARE_BYTES", "RandomBytes", "combine", "split"]

PRIME = 2**521 - 1
MAX_SECRET_BYTES = 64
SHARE_BYTES = (PRIME.bit_length() + 7) // 8  # 66: a share value on the wire, big-endian

# Where randomness comes from: ``os.urandom`` by default; tests pass a seeded ``Random.randbytes``.
RandomBytes = Callable[[int], bytes]

_ELEMENT_MASK = (1 << PRIME.bit_length()) - 1


def split(secret: bytes, threshold: int, xs: Sequence[int], rng: RandomBytes | None = None) -> dict[int, int]:
    """Share ``secret`` so that any ``threshold`` of the returned ``{x: share}`` recover it.

    Args:
        secret: at most 64 bytes.
        threshold: how many shares reconstruct (1 <= threshold <= len(xs)).
        xs: distinct evaluation points in [1, PRIME); x = 0 would be the secret itself.
        rng: source of random bytes for the polynomial; ``os.urandom`` unless testing.
    """
    if len(secret) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret has at most {MAX_SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(xs):
        raise ConfigError(f"threshold must be in [1, {len(xs)}] for {len(xs)} shares, got {threshold}")
    if len(set(xs)) != len(xs) or not all(0 < x < PRIME for x in xs):
        raise ConfigError("share points must be distinct and in [1, PRIME)")
    draw = rng if rng is not None else os.urandom
    coefficients = [int.from_bytes(secret, "big")] + [_random_element(draw) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x) for x in xs}


def combine(shares: Mapping[int, int], threshold: int, length: int) -> bytes:
    """Recover a ``length``-byte secret from at least ``threshold`` shares ``{x: share}``.

    Shares beyond the first ``threshold`` (by x) are checked against the polynomial the first
    ones define, so a corrupted share is detected whenever there is redundancy.

    Raises:
        ProtocolError: fewer than ``threshold`` shares, a share out of range, shares that do not
            lie on one polynomial of degree ``threshold - 1``, or a secret longer than ``length``.
    """
    if threshold < 1:
        raise ConfigError(f"threshold must be at least 1, got {threshold}")
    if not 0 <= length <= MAX_SECRET_BYTES:
        raise ValueError(f"a secret has 0 to {MAX_SECRET_BYTES} bytes, got length {length}")
    if len(shares) < threshold:
        raise ProtocolError(f"need {threshold} shares to reconstruct the secret, got {len(shares)}")
    if not all(0 < x < PRIME and 0 <= y < PRIME for x, y in shares.items()):
        raise ProtocolError("a share point or value is outside the field")
    points = sorted(shares.items())
    basis, extra = points[:threshold], points[threshold:]
    for x, y in extra:
        if _interpolate(basis, x) != y:
            raise ProtocolError(f"inconsistent shares: the share at x={x} is not on the polynomial of the others")
    secret = _interpolate(basis, 0)
    # A secret wider than ``length`` bytes can only come from forged or mismatched shares.
    if secret >= 1 << (8 * length):
        raise ProtocolError(f"inconsistent shares: the reconstructed value does not fit in {length} bytes")
    return secret.to_bytes(length, "big")


def _random_element(draw: RandomBytes) -> int:
    # Rejection sampling keeps coefficients exactly uniform; reducing a wider draw mod PRIME would
    # bias them. Masking to 521 bits leaves a single rejected value, 2^521 - 1 itself.
    while True:
        value = int.from_bytes(draw(SHARE_BYTES), "big") & _ELEMENT_MASK
        if value < PRIME:
            return value


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    # Horner's rule, constant term first in ``coefficients``.
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % PRIME
    return value


def _interpolate(points: Sequence[tuple[int, int]], at: int) -> int:
    """The value at ``at`` of the unique polynomial of degree < len(points) through ``points``."""
    total = 0
    for j, (xj, yj) in enumerate(points):
        numerator, denominator = 1, 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                numerator = numerator * (at - xm) % PRIME
                denominator = denominator * (xj - xm) % PRIME
        total = (total + yj * numerator * pow(denominator, -1, PRIME)) % PRIME
    return total
