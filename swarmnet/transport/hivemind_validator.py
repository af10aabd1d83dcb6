"""A hivemind DHT record validator that makes storage nodes refuse forged swarmnet records.

Readers verify every record anyway (``swarmnet.records``); this stops the worse attack, which
verification on read cannot undo: a forged value with a far-future expiry stored in another
peer's slot would win over the owner's genuine one (the DHT keeps the value expiring last).
So a storage node accepts a swarmnet envelope only if its signature holds, the key, subkey and
DHT expiry are the ones it was signed for, and a slot named by a peer id is written only by
that peer. Values that are not swarmnet envelopes are refused in such peer-owned slots.
"""

from __future__ import annotations

import logging

import base58
from hivemind.dht.routing import DHTID
from hivemind.dht.validation import DHTRecord, RecordValidatorBase
from hivemind.utils.serializer import MSGPackSerializer

from swarmnet.errors import RecordRejected
from swarmnet.records import MAGIC, RecordPolicy, authenticate_envelope

__all__ = ["SwarmnetRecordValidator", "is_peer_id"]

logger = logging.getLogger(__name__)

_ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def is_peer_id(text: object) -> bool:
    """Whether ``text`` is an Ed25519 libp2p peer id (the only kind swarmnet peers have)."""
    if not isinstance(text, str) or not 40 <= len(text) <= 60:
        return False
    try:
        raw = base58.b58decode(text)
    except ValueError:
        return False
    return len(raw) == len(_ED25519_PEER_ID_PREFIX) + 32 and raw.startswith(_ED25519_PEER_ID_PREFIX)


class SwarmnetRecordValidator(RecordValidatorBase):  # type: ignore[misc]
    """Runs inside each DHT node on every store it serves and every value it receives."""

    def __init__(self, policy: RecordPolicy | None = None) -> None:
        self.policy = policy or RecordPolicy()

    def validate(self, record: DHTRecord) -> bool:
        """Return whether a DHT node should store or accept ``record``."""
        try:
            value = MSGPackSerializer.loads(record.value)
            subkey = MSGPackSerializer.loads(record.subkey)
        except Exception:
            logger.debug("refused a DHT record that does not deserialize")
            return False
        is_envelope = isinstance(value, bytes) and value.startswith(MAGIC)
        if not is_envelope:
            if is_peer_id(subkey):
                logger.debug("refused a non-swarmnet value in the peer-owned slot %s", subkey)
                return False
            return True
        try:
            header = authenticate_envelope(value, self.policy)
        except RecordRejected as e:
            logger.debug("refused a DHT record: %s", e.reason)
            return False
        checks = {
            "key": DHTID.generate(source=header.key).to_bytes() == record.key,
            "subkey": header.subkey == subkey,
            "expiry": header.expires_at == record.expiration_time,
            "owner": not is_peer_id(subkey) or subkey == header.peer_id,
            "lifetime": header.expires_at - header.timestamp <= self.policy.max_lifetime,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            logger.debug("refused a swarmnet record by %s: %s mismatch", header.peer_id, ", ".join(failed))
        return not failed

    @property
    def priority(self) -> int:
        """Run before any signature-stripping validator (none today)."""
        return 10

    def merge_with(self, other: RecordValidatorBase) -> bool:
        """Merge with another instance (hivemind combines duplicate validators)."""
        return isinstance(other, SwarmnetRecordValidator)
