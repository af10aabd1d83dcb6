"""The coordinator's side: choosing the threshold and removing the masks from the sum.

The coordinator never sees an individual input. It adds the survivors' masked vectors; pairwise
masks between survivors cancel by themselves; it subtracts each survivor's self-mask PRG(b_u),
reconstructing b_u from the survivors' revealed shares; and for each client that shared keys but
did not submit, it reconstructs that client's mask private key and adds its side of every pair
with a survivor, which cancels the masks the survivors added for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.secagg.field import U32Array
from swarmnet.federated.secagg.keys import KEY_BYTES, KeyPair
from swarmnet.federated.secagg.masking import pairwise_masks
from swarmnet.federated.secagg.messages import AdvertisedKeys, RevealedShare, ShareKind
from swarmnet.federated.secagg.prg import SEED_BYTES, expand_mask
from swarmnet.federated.secagg.roster import Roster
from swarmnet.federated.secagg.shamir import combine

__all__ = ["threshold_for", "unmask_sum"]

logger = logging.getLogger(__name__)


def threshold_for(n: int, dropout_fraction: float = 1 / 3) -> int:
    """The threshold t for ``n`` clients that tolerates losing ``dropout_fraction`` of them.

    ``t = n - floor(n * dropout_fraction)``, at least 2. It must exceed ``n / 2``: otherwise two
    disjoint groups of clients could each be told a different story about who dropped out, and
    the coordinator could learn both secrets of a client.

    Raises:
        ConfigError: ``n < 2``, a fraction outside [0, 1), or a resulting t that is not a majority.
    """
    if n < 2:
        raise ConfigError(f"secure aggregation needs at least 2 clients, got {n}")
    if not 0 <= dropout_fraction < 1:
        raise ConfigError(f"dropout_fraction must be in [0, 1), got {dropout_fraction}")
    threshold = max(2, n - math.floor(n * dropout_fraction))
    if threshold <= n / 2:
        raise ConfigError(
            f"tolerating {dropout_fraction:.0%} dropouts of {n} clients leaves threshold {threshold}, "
            "not a majority; secure aggregation needs t > n / 2"
        )
    return threshold


def unmask_sum(
    masked: Mapping[str, U32Array],
    roster: Sequence[AdvertisedKeys],
    senders: Collection[str],
    responses: Mapping[str, Mapping[str, bytes]],
    threshold: int,
    context: bytes,
    length: int,
) -> U32Array:
    """The uint32 sum (mod 2^32) of the inputs of the clients in ``masked``.

    A responder whose answer is malformed (wrong set of clients, garbage or wrong-kind shares) is
    logged and ignored, as long as ``threshold`` valid responders remain: one faulty client should
    not cost everyone the round. Well-formed but forged share values cannot be told apart that
    way; they are caught when reconstruction is checked: a mask key always (against the advertised
    public key), a self-mask seed only when more than ``threshold`` responders answered (the extra
    shares must lie on the same polynomial). With exactly ``threshold`` responders, a forged seed
    share goes unnoticed and corrupts the sum, though it reveals nothing: clients are trusted to
    answer honestly, as in the semi-honest model of the protocol.

    Args:
        masked: U3, each survivor's masked vector (uint32, ``length`` elements).
        roster: U1, every client's advertised keys (verified again here).
        senders: U2, the clients whose shares were relayed. The coordinator must have relayed the
            shares of every U2 member, and only those, to every other U2 member: each client masks
            with exactly the senders it received shares from.
        responses: U4, responder -> ``SecAggClient.unmask`` output.
        threshold: t, as every client was told.
        context: the round context.
        length: the vector length.

    Raises:
        ProtocolError: inconsistent client sets, a bad masked vector (naming the client), fewer than
            ``threshold`` survivors or valid responses (naming the rejected responders), or shares
            that do not reconstruct a consistent secret (naming whose).
    """
    if threshold < 2:
        raise ConfigError(f"the secure-aggregation threshold must be at least 2, got {threshold}")
    verified = Roster(roster, context)
    u2, u3 = set(senders), set(masked)
    if unknown := u2 - set(verified.ids):
        raise ProtocolError(f"senders {_names(unknown)} are not in the roster")
    if stray := u3 - u2:
        raise ProtocolError(f"clients {_names(stray)} submitted masked input without having shared keys")
    if len(u3) < threshold:
        raise ProtocolError(f"only {len(u3)} clients submitted masked input, fewer than the threshold {threshold}")
    for client_id, vector in masked.items():
        if not isinstance(vector, np.ndarray) or vector.dtype != np.uint32 or vector.shape != (length,):
            raise ProtocolError(f"the masked input of {client_id} is not a uint32 vector of length {length}")
    shares = _collect_shares(responses, verified, u2, u3, threshold)

    total = np.zeros(length, dtype=np.uint32)
    for vector in masked.values():
        total += vector
    survivors_keys = {client_id: verified[client_id].mask_key for client_id in u3}
    for client_id in sorted(u2):
        if client_id in u3:
            total -= expand_mask(_reconstruct(client_id, shares[client_id], threshold, SEED_BYTES), length)
        else:
            mask_key = KeyPair.from_private_bytes(_reconstruct(client_id, shares[client_id], threshold, KEY_BYTES))
            if mask_key.public_bytes != verified[client_id].mask_key:
                raise ProtocolError(f"the reconstructed mask key of {client_id} does not match the one it advertised")
            total += pairwise_masks(client_id, mask_key.private_key, survivors_keys, context, length)
    return total


def _collect_shares(
    responses: Mapping[str, Mapping[str, bytes]],
    roster: Roster,
    u2: set[str],
    u3: set[str],
    threshold: int,
) -> dict[str, dict[int, int]]:
    """about-client -> {responder's Shamir point: share}, from the valid responses only."""
    shares: dict[str, dict[int, int]] = {client_id: {} for client_id in u2}
    valid = 0
    rejected: dict[str, str] = {}
    for responder, answer in responses.items():
        try:
            parsed = _parse_response(responder, answer, u2, u3)
        except ProtocolError as e:
            logger.debug("ignoring the unmask response of %s: %s", responder, e)
            rejected[responder] = str(e)
            continue
        valid += 1
        for client_id, value in parsed.items():
            shares[client_id][roster.point(responder)] = value
    if valid < threshold:
        detail = "".join(f"; rejected {who}: {why}" for who, why in sorted(rejected.items()))
        raise ProtocolError(f"only {valid} valid unmask responses, fewer than the threshold {threshold}{detail}")
    return shares


def _parse_response(responder: str, answer: Mapping[str, bytes], u2: set[str], u3: set[str]) -> dict[str, int]:
    # Only survivors answer: a client that was declared dropped refuses to (see SecAggClient.unmask).
    if responder not in u3:
        raise ProtocolError(f"{responder} did not submit masked input, so it cannot take part in unmasking")
    if set(answer) != u2:
        raise ProtocolError(f"{responder} answered about {len(answer)} clients, expected the {len(u2)} senders")
    parsed: dict[str, int] = {}
    for client_id, data in answer.items():
        share = RevealedShare.from_bytes(data)
        expected = ShareKind.SEED if client_id in u3 else ShareKind.MASK_KEY
        if share.kind is not expected:
            raise ProtocolError(f"{responder} revealed a {share.kind.name} share of {client_id}, not {expected.name}")
        parsed[client_id] = share.value
    return parsed


def _reconstruct(client_id: str, shares: Mapping[int, int], threshold: int, length: int) -> bytes:
    try:
        return combine(shares, threshold, length)
    except ProtocolError as e:
        raise ProtocolError(f"cannot reconstruct the secret of {client_id}: {e}") from e


def _names(client_ids: set[str]) -> str:
    return ", ".join(sorted(client_ids))
