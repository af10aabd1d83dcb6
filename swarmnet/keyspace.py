"""The swarm's DHT key families: which records each key may hold, for how long, and how large.

A DHT node cannot tell who owns a key (it sees only a hash), but every swarmnet record carries the
key it was signed for. So storage nodes (``swarmnet.transport.hivemind_validator``) and readers
(``swarmnet.records.RecordVerifier``) look the signed key up here and accept a record only if

* its key belongs to a known family (a key nobody in the protocol uses holds nothing),
* its kind is the family's,
* it sits in its author's own slot: every family is a dictionary with one subkey per peer, the
  peer id of the record's signer, so nobody can write, blank or shadow another peer's entry,
* it lives no longer than the family's protocol bound (however long its author asked for), and
* it is no larger than the family's bound, which keeps a key's whole dictionary (one DHT message)
  under the p2p daemon's 4 MiB limit for a realistic number of peers.

The lifetime bounds are part of the protocol: configs that set a ttl refuse values above them.
Keys are built by the packages that own them; a test checks that each one matches its family here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "AVERAGING_MAX_LIFETIME",
    "DILOCO_PROGRESS_MAX_LIFETIME",
    "DILOCO_STATE_MAX_LIFETIME",
    "FAMILIES",
    "KeyFamily",
    "MEMBERSHIP_MAX_LIFETIME",
    "REMOTE_MODULE_MAX_LIFETIME",
    "TELEMETRY_MAX_LIFETIME",
    "family_of",
]

KIB = 1024

# Longest lifetime (expires_at - timestamp, seconds) of a record of each family. Each is well above
# what its package uses by default (membership ttl 20 s, telemetry 30 s, a join record the matchmaking
# timeout + 6 s, DiLoCo progress 30-60 s, DiLoCo state 120 s), and bounds what a peer that stores
# once and vanishes (or a Sybil identity) can leave behind.
MEMBERSHIP_MAX_LIFETIME = 120.0
TELEMETRY_MAX_LIFETIME = 600.0
AVERAGING_MAX_LIFETIME = 600.0
DILOCO_PROGRESS_MAX_LIFETIME = 600.0
DILOCO_STATE_MAX_LIFETIME = 3600.0
REMOTE_MODULE_MAX_LIFETIME = 300.0  # remote module records (``swarmnet.remote``): ttl 30 s by default

_NAME = r"[^/]{1,128}"  # a swarm, run or schema name: what the configs allow
_VERSION = r"v[0-9]{1,4}"
_UID = r"[A-Za-z0-9_\-:.]{1,128}"  # a remote module's uid (``swarmnet.remote.config.UID_PATTERN``) or its prefix
_REMOTE_LIFE = REMOTE_MODULE_MAX_LIFETIME
_AVERAGING = rf"swarmnet/{_VERSION}/avg/{_NAME}/[0-9]{{1,20}}/{_NAME}"


@dataclass(frozen=True)
class KeyFamily:
    """One kind of DHT key the protocol uses, and what a record stored under it must satisfy."""

    name: str
    pattern: re.Pattern[str]  # matches the whole signed key string
    kind: str  # the payload kind (``Payload.KIND``) its records carry
    max_lifetime: float  # seconds from a record's timestamp to its expiry
    max_bytes: int  # a whole envelope

    def matches(self, key: str) -> bool:
        """Whether ``key`` belongs to this family."""
        return self.pattern.fullmatch(key) is not None


def _family(name: str, pattern: str, kind: str, max_lifetime: float, max_bytes: int) -> KeyFamily:
    return KeyFamily(name, re.compile(pattern), kind, max_lifetime, max_bytes)


FAMILIES: tuple[KeyFamily, ...] = (
    # swarmnet/v1/<swarm>/peers: membership announcements (``swarmnet.membership``). A realistic one
    # is about 1 KiB; 8 KiB leaves room for many addresses and still lets ~500 fill a 4 MiB message.
    _family("membership", rf"swarmnet/{_VERSION}/{_NAME}/peers", "peer_info", MEMBERSHIP_MAX_LIFETIME, 8 * KIB),
    # swarmnet/v1/<swarm>/telemetry: telemetry reports (``swarmnet.telemetry``), up to the record limit.
    _family("telemetry", rf"swarmnet/{_VERSION}/{_NAME}/telemetry", "telemetry", TELEMETRY_MAX_LIFETIME, 16 * KIB),
    # swarmnet/v1/avg/<run>/<round>/<schema>: averaging join records (``swarmnet.averaging``).
    _family("averaging", _AVERAGING, "avg_join", AVERAGING_MAX_LIFETIME, 2 * KIB),
    # <run>/diloco-progress and <run>/diloco-state: DiLoCo sync points and global state (``swarmnet.diloco``).
    _family("diloco-progress", rf"{_NAME}/diloco-progress", "diloco_progress", DILOCO_PROGRESS_MAX_LIFETIME, 2 * KIB),
    _family("diloco-state", rf"{_NAME}/diloco-state", "diloco_state", DILOCO_STATE_MAX_LIFETIME, 8 * KIB),
    # swarmnet/v1/mod/<uid>/servers: one record per server hosting module <uid> (``swarmnet.remote``);
    # swarmnet/v1/mod/<prefix>/uids: per server, the uids it hosts under <prefix> (e.g. a MoE grid row).
    _family("remote-module", rf"swarmnet/{_VERSION}/mod/{_UID}/servers", "remote_module", _REMOTE_LIFE, 2 * KIB),
    _family("remote-prefix", rf"swarmnet/{_VERSION}/mod/{_UID}/uids", "remote_prefix", _REMOTE_LIFE, 8 * KIB),
)


def family_of(key: str) -> KeyFamily | None:
    """The family ``key`` belongs to, or ``None`` for a key the protocol does not use."""
    for family in FAMILIES:
        if family.matches(key):
            return family
    return None
