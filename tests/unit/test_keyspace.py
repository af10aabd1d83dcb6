"""``swarmnet.keyspace``: every DHT key the packages build belongs to exactly one family, of their kind."""

from __future__ import annotations

import re

import pytest

from swarmnet.averaging.seeking import GroupJoin
from swarmnet.diloco.progress import ProgressBoard, SyncReached
from swarmnet.diloco.state_sync import StateAnnouncement, StateSyncConfig
from swarmnet.identity import Identity
from swarmnet.keyspace import FAMILIES, family_of
from swarmnet.membership import MembershipConfig, PeerInfo
from swarmnet.records import Payload, RecordVerifier, sign_record
from swarmnet.remote import ModuleRecord, PrefixRecord, module_key, prefix_key
from swarmnet.remote.config import UID_PATTERN
from swarmnet.telemetry import TelemetryConfig, TelemetryReport
from swarmnet.transport.memory import MemoryNetwork
from swarmnet.version import PROTOCOL_VERSION

P2P_MESSAGE_LIMIT = 4 << 20  # the p2p daemon's largest message: one lookup returns a key's whole dictionary
NAMES = ["main", "m" * 128, "run-1.a_b", "ünïcode", "a b"]


def check_uid_ok(name: str) -> bool:
    return UID_PATTERN.fullmatch(f"{name}.stage.2") is not None


def _progress_key(run: str) -> str:
    identity = Identity.generate()
    return ProgressBoard(MemoryNetwork().add_peer(identity.peer_id), identity, run, "schema").key


@pytest.mark.parametrize("name", NAMES)
def test_the_keys_each_package_builds_belong_to_its_family(name: str) -> None:
    # The matchmaker builds its key inline: this is its format (test_validator_admits_honest_records runs it).
    averaging = f"swarmnet/v{PROTOCOL_VERSION}/avg/{name}/17/0123456789abcdef01234567"
    built = {
        MembershipConfig(swarm=name).key: ("membership", PeerInfo.KIND),
        TelemetryConfig(swarm=name).key: ("telemetry", TelemetryReport.KIND),
        averaging: ("averaging", GroupJoin.KIND),
        _progress_key(name): ("diloco-progress", SyncReached.KIND),
        StateSyncConfig(run=name).key: ("diloco-state", StateAnnouncement.KIND),
    }
    if check_uid_ok(name):  # module uids are a narrower alphabet than run names
        built[module_key(f"{name}.stage.2")] = ("remote-module", ModuleRecord.KIND)
        built[prefix_key(f"{name}.L.3.")] = ("remote-prefix", PrefixRecord.KIND)
    for key, (family_name, kind) in built.items():
        family = family_of(key)
        assert family is not None, key
        assert (family.name, family.kind) == (family_name, kind)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "peers",
        "swarmnet/v1/peers",
        "swarmnet/v1//peers",
        "swarmnet/v1/a/b/peers",
        "swarmnet/v1/main/peers/",
        "swarmnet/vx/main/peers",
        "swarmnet/v1/" + "m" * 129 + "/peers",
        "swarmnet/v1/main/telemetry/extra",
        "swarmnet/v1/avg/run/-1/schema",
        "swarmnet/v1/avg/run/1/schema/extra",
        "swarmnet/v1/avg/run/\u0661/schema",  # a non-ASCII digit
        "diloco-state",
        "a/b/diloco-progress",
        "run/diloco-state-2",
        "run/diloco-state\n",
    ],
)
def test_keys_no_package_builds_belong_to_no_family(key: str) -> None:
    assert family_of(key) is None


def test_families_are_disjoint_on_each_others_keys() -> None:
    examples = [
        "swarmnet/v1/avg/peers",  # a swarm named "avg"
        "swarmnet/v1/avg/telemetry",
        "swarmnet/v1/avg/peers/1/x",  # an averaging run named "peers"
        "swarmnet/diloco-state",  # a DiLoCo run named "swarmnet"
        "peers/diloco-progress",
    ]
    for key in examples:
        assert sum(family.matches(key) for family in FAMILIES) == 1, key


def test_family_bounds_are_sane() -> None:
    assert len({family.name for family in FAMILIES}) == len({family.kind for family in FAMILIES}) == len(FAMILIES)
    for family in FAMILIES:
        assert 0 < family.max_lifetime <= 3600.0
        # Even a key full of maximal records holds a few hundred peers before a lookup overflows.
        assert P2P_MESSAGE_LIMIT // family.max_bytes >= 256, family.name
        assert isinstance(family.pattern, re.Pattern)


# --- readers apply the same bounds as storage nodes ----------------------------------------------

NOW = 1_700_000_000.0
ALICE = Identity.generate()
KEY = MembershipConfig(swarm="main").key


def _verdict(payload: Payload, *, lifetime: float = 10.0, key: str = KEY) -> str:
    raw = sign_record(ALICE, payload, key=key, subkey=ALICE.peer_id, timestamp=NOW, expires_at=NOW + lifetime)
    record = RecordVerifier().verify_or_none(raw, type(payload), key=key, subkey=ALICE.peer_id, now=NOW)
    return "accepted" if record is not None else "rejected"


def test_readers_refuse_records_beyond_their_familys_lifetime() -> None:
    family = family_of(KEY)
    assert family is not None
    assert _verdict(PeerInfo(), lifetime=family.max_lifetime) == "accepted"
    assert _verdict(PeerInfo(), lifetime=family.max_lifetime + 1) == "rejected"
    assert _verdict(PeerInfo(), lifetime=24 * 3600.0) == "rejected"


def test_readers_refuse_records_beyond_their_familys_size() -> None:
    big = PeerInfo(addresses=tuple(f"/dns4/{'a' * 240}/tcp/{port}" for port in range(32)))
    assert _verdict(big, key="swarmnet/v1/main/not-a-family") == "accepted"  # the generic policy allows 16 KiB
    assert _verdict(big) == "rejected"


def test_readers_refuse_another_kind_under_a_family_key() -> None:
    assert _verdict(TelemetryReport()) == "rejected"
    assert _verdict(TelemetryReport(), key=TelemetryConfig(swarm="main").key) == "accepted"
