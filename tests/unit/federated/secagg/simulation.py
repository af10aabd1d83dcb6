"""An in-memory secure-aggregation round: the coordinator's relaying, with scripted dropouts."""

from __future__ import annotations

import functools
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swarmnet.coordinator.secagg_unmask import unmask_sum
from swarmnet.federated.secagg import AdvertisedKeys, SecAggClient, add_mod
from swarmnet.federated.secagg.field import U32Array
from swarmnet.identity import Identity

CONTEXT = b"run=test-run|round=3|nonce=0123456789abcdef"


def seeded_identity(seed: int) -> Identity:
    """A reproducible Ed25519 identity."""
    return Identity(Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32)))


def make_clients(n: int, threshold: int, seed: int = 0, context: bytes = CONTEXT) -> list[SecAggClient]:
    """``n`` clients with reproducible identities and round randomness."""
    return [
        SecAggClient(
            seeded_identity(seed * 1000 + i),
            context,
            threshold,
            entropy=random.Random(f"entropy-{seed}-{i}").randbytes,
        )
        for i in range(n)
    ]


def random_inputs(clients: list[SecAggClient], length: int, seed: int = 0) -> dict[str, U32Array]:
    """Uniform field vectors, one per client (the hardest case for exactness: every sum wraps)."""
    rng = np.random.default_rng(seed)
    return {c.client_id: rng.integers(0, 2**32, size=length, dtype=np.uint32) for c in clients}


def field_sum(vectors: Collection[U32Array]) -> U32Array:
    """The plain mod-2^32 sum the protocol must reproduce."""
    return functools.reduce(add_mod, vectors)


@dataclass
class Round:
    """What the coordinator saw in one simulated round."""

    roster: list[AdvertisedKeys]
    senders: set[str]  # U2
    masked: dict[str, U32Array]  # U3
    responses: dict[str, dict[str, bytes]] = field(default_factory=dict)  # U4

    @property
    def dropped(self) -> list[str]:
        """U2 minus U3."""
        return sorted(self.senders - self.masked.keys())


def run_round(
    clients: list[SecAggClient],
    inputs: Mapping[str, U32Array],
    *,
    drop_before_sharing: Collection[str] = (),
    drop_after_sharing: Collection[str] = (),
    drop_after_masking: Collection[str] = (),
) -> Round:
    """Relay every message like the coordinator; clients in a ``drop_*`` set stop at that point."""
    roster = [c.advertise() for c in clients]
    outboxes = {c.client_id: c.share_keys(roster) for c in clients if c.client_id not in drop_before_sharing}
    senders = set(outboxes)
    maskers = [c for c in clients if c.client_id in senders and c.client_id not in drop_after_sharing]
    masked = {}
    for client in maskers:
        inbox = {sender: out[client.client_id] for sender, out in outboxes.items() if client.client_id in out}
        masked[client.client_id] = client.mask(inputs[client.client_id], inbox)
    result = Round(roster=roster, senders=senders, masked=masked)
    survivors = sorted(masked)
    for client in maskers:
        if client.client_id not in drop_after_masking:
            result.responses[client.client_id] = client.unmask(survivors, result.dropped)
    return result


def aggregate(result: Round, threshold: int, length: int) -> U32Array:
    """The coordinator's final step over a simulated round."""
    return unmask_sum(result.masked, result.roster, result.senders, result.responses, threshold, CONTEXT, length)
