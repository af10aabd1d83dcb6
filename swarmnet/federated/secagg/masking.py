"""Pairwise masks: the part of a client's mask that cancels in the sum without anyone's help.

Clients u and v derive the same seed s_uv from their mask keys; the one with the smaller id adds
PRG(s_uv) and the other subtracts it, so the pair contributes zero to the total. When v drops out
after the others have masked with it, the coordinator reconstructs v's mask private key and
computes v's side of each pair with the survivors, which is exactly what cancels theirs: the same
function serves the client (masking) and the coordinator (recovery).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from swarmnet.federated.secagg.field import U32Array
from swarmnet.federated.secagg.keys import MASK_PURPOSE, agree
from swarmnet.federated.secagg.prg import expand_mask

__all__ = ["pairwise_masks"]


def pairwise_masks(
    own_id: str,
    mask_private: X25519PrivateKey,
    peer_mask_keys: Mapping[str, bytes],
    context: bytes,
    length: int,
) -> U32Array:
    """``sum over peers v of ±PRG(s_uv)`` mod 2^32: + if ``own_id < v``, - if ``own_id > v``.

    Args:
        own_id: the client whose side of each pair this is (u).
        mask_private: u's mask private key.
        peer_mask_keys: each peer's advertised mask public key; an entry for u itself is skipped.
        context: the round context, bound into every seed.
        length: the vector length.
    """
    total = np.zeros(length, dtype=np.uint32)
    for peer_id, peer_key in peer_mask_keys.items():
        if peer_id == own_id:
            continue
        mask = expand_mask(agree(mask_private, peer_key, context, MASK_PURPOSE), length)
        # In-place uint32 arithmetic wraps mod 2^32, and allocates nothing per peer beyond the mask.
        if own_id < peer_id:
            total += mask
        else:
            total -= mask
    return total
