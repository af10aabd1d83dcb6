"""A hivemind DHT record validator: storage nodes keep only the swarm's own, well-formed records.

Readers verify every record anyway (``swarmnet.records``), but verification on read cannot undo
what a storage node keeps: a plain value stored over a key replaces its whole dictionary (every
peer's entry), a value with a far-future expiry wins over every later one (the DHT keeps the value
expiring last), and megabytes of junk in a key make every lookup of it overflow the p2p daemon's
message limit. So a node stores (and accepts from other nodes) only a swarmnet envelope whose

* signature holds and whose body is strict JSON (``authenticate_envelope``),
* signed key is the DHT key it is stored under, and belongs to a family the protocol uses
  (``swarmnet.keyspace``), with that family's kind, size and lifetime bounds,
* signed subkey and expiry are the ones it is stored with,
* expiry is no further in this node's future than the family's lifetime bound (plus clock skew),
  whatever timestamp the record claims, and
* subkey is its signer's peer id: each peer writes only its own entry.

Everything else is refused: values that are not envelopes, plain values (no subkey), keys the
protocol does not use. This runs inside the DHT process on every store it serves and every value
a lookup returns, so it must accept an honest record whenever it is checked: every check holds
for good once it held (an expiry only gets nearer), and none asks whether the record expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hivemind.dht.routing import DHTID
from hivemind.dht.validation import DHTRecord, RecordValidatorBase
from hivemind.utils.serializer import MSGPackSerializer
from hivemind.utils.timed_storage import get_dht_time

from swarmnet.errors import RecordRejected
from swarmnet.keyspace import family_of
from swarmnet.records import MAGIC, RecordHeader, RecordPolicy, authenticate_envelope, check_key_family

__all__ = ["SwarmnetRecordValidator"]

logger = logging.getLogger(__name__)


class SwarmnetRecordValidator(RecordValidatorBase):  # type: ignore[misc]
    """Runs inside each DHT node on every store it serves and every value it receives."""

    def __init__(self, policy: RecordPolicy | None = None, clock: Callable[[], float] = get_dht_time) -> None:
        self.policy = policy or RecordPolicy()
        self._clock = clock  # the DHT's time: what expiration times are measured in

    def validate(self, record: DHTRecord) -> bool:
        """Return whether a DHT node should store or accept ``record``; log why not at debug level."""
        reason = self.refusal(record)
        if reason is not None:
            logger.debug("refused a DHT record: %s", reason)
        return reason is None

    def refusal(self, record: DHTRecord) -> str | None:
        """Why a node must refuse ``record``, or ``None`` if it may store it."""
        try:
            value = MSGPackSerializer.loads(record.value)
            subkey = MSGPackSerializer.loads(record.subkey)
        except Exception:
            return "does not deserialize"
        if not isinstance(value, bytes) or not value.startswith(MAGIC):
            return f"not a swarmnet record ({type(value).__name__} under subkey {_short(subkey)})"
        try:
            header = authenticate_envelope(value, self.policy)
            check_key_family(header, len(value))
        except RecordRejected as e:
            return e.reason
        mismatched = _mismatches(header, record, subkey)
        if not mismatched and not self._expiry_bounded(header):
            mismatched.append("expires too far in the future")
        if mismatched:
            return f"record by {header.peer_id} for {header.key[:128]!r}: {', '.join(mismatched)}"
        return None

    def _expiry_bounded(self, header: RecordHeader) -> bool:
        family = family_of(header.key)
        horizon = self._clock() + self.policy.max_clock_skew + (family.max_lifetime if family else 0.0)
        return header.expires_at <= horizon

    @property
    def priority(self) -> int:
        """Run before any signature-stripping validator (none today)."""
        return 10

    def merge_with(self, other: RecordValidatorBase) -> bool:
        """Merge with another instance (hivemind combines duplicate validators)."""
        return isinstance(other, SwarmnetRecordValidator)


def _mismatches(header: RecordHeader, record: DHTRecord, subkey: object) -> list[str]:
    """What about where and until when ``record`` is stored disagrees with what its author signed."""
    checks = {
        "unknown key family": family_of(header.key) is not None,
        "key mismatch": DHTID.generate(source=header.key).to_bytes() == record.key,
        "subkey mismatch": header.subkey == subkey,
        "expiry mismatch": header.expires_at == record.expiration_time,
        "not the author's own slot": subkey == header.peer_id,
    }
    return [name for name, ok in checks.items() if not ok]


def _short(subkey: object) -> str:
    return repr(subkey)[:64]
