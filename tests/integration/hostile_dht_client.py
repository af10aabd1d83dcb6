"""A stock hivemind client that attacks a swarmnet swarm's DHT keys. It imports no swarmnet code.

Run as a script: ``python hostile_dht_client.py INITIAL_PEER SWARM ATTACK...``. It joins the DHT in
client mode (so only the swarm's own nodes store what it sends), performs each named attack,
and prints one JSON object: ``{"stored": {attack: [store results]}, "ids": {attack: peer id},
"imported_swarmnet": bool}``. Swarmnet envelopes are built here from the wire format alone
(``SWR1 | Ed25519 public key | signature | JSON body``), as any outsider could.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hivemind.dht.node import DHTNode
from hivemind.utils.timed_storage import get_dht_time

MAGIC = b"SWR1"
DOMAIN = b"swarmnet-record\x00"
YEAR = 365 * 24 * 3600.0
MIB = 1 << 20
STORE_TIMEOUT = 15.0  # seconds

Body = dict[str, Any]
Store = tuple[str, Any, bytes, float]  # key, subkey, value, expiration time


class Attacker:
    """One Ed25519 identity that signs swarmnet-shaped records."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.peer_id = base58.b58encode(bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + self.public).decode()

    def seal(self, body: bytes) -> bytes:
        """An envelope around ``body``, signed the way swarmnet peers sign."""
        return MAGIC + self.public + self._key.sign(DOMAIN + body) + body

    def body(self, key: str, subkey: str | None, timestamp: float, expires_at: float, **payload: Any) -> Body:
        """A membership record's body (``kind`` and ``payload`` may be overridden)."""
        kind = payload.pop("kind", "peer_info")
        return {
            "protocol_version": 1,
            "kind": kind,
            "peer_id": self.peer_id,
            "key": key,
            "subkey": subkey,
            "timestamp": timestamp,
            "expires_at": expires_at,
            "payload": {"roles": ["volunteer"], "state": "online", "session": "feedfacefeedface", **payload},
        }

    def signed(self, body: dict[str, Any]) -> bytes:
        """``body`` as JSON (NaN allowed, as Python's json writes it) in a signed envelope."""
        return self.seal(json.dumps(body).encode())


def _own_slot(attacker: Attacker, key: str, now: float, lifetime: float, start: float = 0.0, **payload: Any) -> Store:
    """A record in the attacker's own slot, signed for exactly where and until when it is stored."""
    timestamp, expires_at = now + start, now + start + lifetime
    body = attacker.body(key, attacker.peer_id, timestamp, expires_at, **payload)
    return key, attacker.peer_id, attacker.signed(body), expires_at


def _duplicate_keys(attacker: Attacker, key: str, now: float) -> Store:
    """A body whose ``state`` appears twice: first-wins parsers read "left", last-wins ones "online"."""
    body = attacker.body(key, attacker.peer_id, now, now + 60.0)
    text = json.dumps(body).replace('"state": "online"', '"state": "left", "state": "online"')
    return key, attacker.peer_id, attacker.seal(text.encode()), now + 60.0


def attacks(swarm: str, now: float) -> dict[str, Callable[[Attacker], list[Store]]]:
    """Each attack: what it stores, given a fresh identity."""
    peers, telemetry = f"swarmnet/v1/{swarm}/peers", f"swarmnet/v1/{swarm}/telemetry"
    signed_plain = Attacker()
    plain_body = signed_plain.body(peers, None, now, now + 24 * 3600.0)
    return {
        # Plain values (no subkey) over the membership key: they replaced its whole dictionary.
        "plain-junk": lambda a: [(peers, None, os.urandom(16), now + 10 * YEAR)],
        "signed-plain": lambda a: [(peers, None, signed_plain.signed(plain_body), now + 24 * 3600.0)],
        # The same over every other key family the swarm uses.
        "plain-junk-elsewhere": lambda a: [
            (telemetry, None, os.urandom(16), now + 10 * YEAR),
            ("swarmnet/v1/avg/default/0/00112233445566778899aabb", None, os.urandom(16), now + YEAR),
            ("default/diloco-state", None, os.urandom(16), now + YEAR),
            ("default/diloco-progress", None, os.urandom(16), now + YEAR),
        ],
        # Junk under entry names that are not peer ids: 5 MiB in one key overflows every lookup of it.
        "junk-entries": lambda a: [(peers, f"junk-{i}", os.urandom(MIB), now + 3600.0) for i in range(5)],
        "junk-in-own-slot": lambda a: [(peers, a.peer_id, os.urandom(4096), now + 3600.0)],
        # Self-signed members in their own slots.
        "sybil-24h": lambda a: [_own_slot(a, peers, now, 24 * 3600.0, compute_gflops=1e9, bandwidth_mbps=1e6)],
        "sybil-claims": lambda a: [
            _own_slot(a, peers, now, 60.0, compute_gflops=1e9, bandwidth_mbps=1e6, bandwidth_source="measured")
        ],
        "sybil-stale": lambda a: [_own_slot(a, peers, now, 110.0, start=-60.0)],
        "nan": lambda a: [_own_slot(a, peers, now, 60.0, started_at=float("nan"))],
        "infinity": lambda a: [_own_slot(a, peers, now, 60.0, compute_gflops=float("inf"))],
        "duplicate-keys": lambda a: [_duplicate_keys(a, peers, now)],
        "wrong-kind": lambda a: [_own_slot(a, peers, now, 60.0, kind="telemetry")],
        "unknown-key": lambda a: [_own_slot(a, f"swarmnet/v1/{swarm}/anything", now, 60.0)],
        "oversized": lambda a: [_own_slot(a, peers, now, 60.0, roles=["x" * 12000])],
    }


async def _store(node: DHTNode, key: str, subkey: Any, value: bytes, expiration: float) -> bool | None:
    """Whether any node accepted the value; ``None`` if the store did not finish in time."""
    try:
        return bool(await asyncio.wait_for(node.store(key, value, expiration, subkey=subkey), STORE_TIMEOUT))
    except TimeoutError:
        return None


async def main(initial_peer: str, swarm: str, names: list[str]) -> dict[str, Any]:
    """Join, attack, report. An in-process ``DHTNode``: ``hivemind.DHT``'s pipe cannot carry 1 MiB values."""
    node = await DHTNode.create(initial_peers=[initial_peer], client_mode=True)
    try:
        now = get_dht_time()
        plan = attacks(swarm, now)
        stored: dict[str, list[bool | None]] = {}
        ids: dict[str, str] = {}
        for name in names:
            attacker = Attacker()
            ids[name] = attacker.peer_id
            stored[name] = [await _store(node, *item) for item in plan[name](attacker)]
    finally:
        await node.shutdown()
    imported = any(module == "swarmnet" or module.startswith("swarmnet.") for module in sys.modules)
    return {"stored": stored, "ids": ids, "imported_swarmnet": imported}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))), flush=True)
