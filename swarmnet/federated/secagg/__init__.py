"""Secure aggregation (Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", CCS 2017): the coordinator learns the sum of the clients' updates, never one.

Pure protocol logic, no networking: the coordinator relays every message as opaque bytes.

Each client encodes its update as integers in Z_{2^32} (fixed point, or few-bit values times scales
the round shares, packed several to a word) and adds two kinds of masks. A pairwise mask
±PRG(s_uv) for every other client v, where s_uv comes from an X25519 agreement between their mask
keys; u and v add it with opposite signs, so it cancels in the sum. And a self mask PRG(b_u) from
a random seed. Both secrets are Shamir-shared t-of-n among the clients, so that when clients drop
out the survivors can help: for a client that submitted, they reveal shares of b_u (its self
mask is subtracted); for one that dropped after sharing, they reveal shares of its mask private
key (its pairwise masks with survivors are recomputed and cancelled). No honest client reveals
both for the same client, and t > n / 2, so the coordinator cannot unmask a single input::

    round 0  client.advertise()          -> AdvertisedKeys      coordinator: roster U1
    round 1  client.share_keys(U1)       -> encrypted shares    coordinator: relays, senders U2
    round 2  client.mask(x, shares)      -> masked vector       coordinator: survivors U3
    round 3  client.unmask(U3, U2 - U3)  -> revealed shares     coordinator: unmask_sum(...)

Every signature, key derivation and share encryption binds the round ``context``, so nothing
carries over between rounds. This is the semi-honest variant with signed keys: it has no
consistency-check round, so a malicious coordinator that tells different clients different
survivor sets is only stopped by each client's refusal to reveal both secrets of one client.

* **FieldConfig, quantize, dequantize, add_mod, sub_mod (field.py)** - fixed-point encoding into Z_{2^32}
* **ScaledEncoding, ScaledSum (scaled.py)** - few-bit integers times scales shared by the round
* **pack, unpack, slot_bits (packing.py)** - several small values per word, their sums exact
* **split, combine (shamir.py)** - Shamir t-of-n sharing over GF(2^521 - 1)
* **expand_mask (prg.py)** - the ChaCha20 PRG from a seed to a uint32 mask
* **KeyPair, agree, encrypt_share, decrypt_share (keys.py)** - X25519, HKDF and ChaCha20-Poly1305
* **AdvertisedKeys, ShareBundle, RevealedShare, ShareKind (messages.py)** - the wire messages
* **Roster (roster.py)** - the verified participants and their Shamir points
* **pairwise_masks (masking.py)** - the masks that cancel in pairs
* **SecAggClient (client.py)** - one client's side of one round

The coordinator's side (``unmask_sum``, ``threshold_for``) is ``swarmnet.coordinator.secagg_unmask``.
"""

from swarmnet.federated.secagg.client import SecAggClient
from swarmnet.federated.secagg.field import FieldConfig, add_mod, dequantize, quantize, sub_mod
from swarmnet.federated.secagg.keys import KeyPair, agree, decrypt_share, encrypt_share
from swarmnet.federated.secagg.masking import pairwise_masks
from swarmnet.federated.secagg.messages import AdvertisedKeys, RevealedShare, ShareBundle, ShareKind
from swarmnet.federated.secagg.packing import pack, slot_bits, unpack
from swarmnet.federated.secagg.prg import expand_mask
from swarmnet.federated.secagg.roster import Roster
from swarmnet.federated.secagg.scaled import ScaledEncoding, ScaledSum
from swarmnet.federated.secagg.shamir import combine, split

__all__ = [
    "AdvertisedKeys",
    "FieldConfig",
    "KeyPair",
    "RevealedShare",
    "Roster",
    "ScaledEncoding",
    "ScaledSum",
    "SecAggClient",
    "ShareBundle",
    "ShareKind",
    "add_mod",
    "agree",
    "combine",
    "decrypt_share",
    "dequantize",
    "encrypt_share",
    "expand_mask",
    "pack",
    "pairwise_masks",
    "quantize",
    "split",
    "slot_bits",
    "sub_mod",
    "unpack",
]
