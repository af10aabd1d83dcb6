"""A federated client written from swarmnet/proto/PROTOCOL.md alone: no swarmnet, no generated stubs.

It speaks gRPC through grpcio's generic calls with raw bytes, encodes and decodes the protobuf
messages by hand, signs with ``cryptography``'s Ed25519, and builds SWC1 payloads itself. For each
round it registers (once), long-polls for a task, fetches the adapter, submits a small known delta
encoded with the round's codec, waits until ``Status`` reports the round aggregated with it, fetches
the new adapter and checks that it moved by exactly that delta. One JSON line per round goes to
stdout; any mismatch exits non-zero.

    python raw_client.py --address 127.0.0.1:50051 --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time
import zlib
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SERVICE = "/swarmnet.federated.v1.Coordinator/"
SESSION_KEY = "x-swarmnet-session-bin"
REGISTER_TAG = b"swarmnet.federated.v1/register\x00"
UPDATE_TAG = b"swarmnet.federated.v1/update\x00"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
TRAIN, DONE = 1, 2
Fields = dict[int, list[Any]]


# -- protobuf, by hand -----------------------------------------------------------------------
def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: ten-byte two's complement
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def f_int(field: int, value: int) -> bytes:
    return tag(field, 0) + varint(value) if value else b""


def f_bytes(field: int, value: bytes) -> bytes:
    return tag(field, 2) + varint(len(value)) + value if value else b""


def f_str(field: int, value: str) -> bytes:
    return f_bytes(field, value.encode())


def f_double(field: int, value: float) -> bytes:
    return tag(field, 1) + struct.pack("<d", value) if value else b""


def f_message(field: int, body: bytes) -> bytes:
    return tag(field, 2) + varint(len(body)) + body


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, at


def parse(data: bytes) -> Fields:
    """Field number -> values in order (varints as int, fixed64 as 8 bytes, length-delimited as bytes)."""
    out: Fields = {}
    at = 0
    while at < len(data):
        key, at = read_varint(data, at)
        field, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, at = read_varint(data, at)
        elif wire_type == 1:
            value, at = data[at : at + 8], at + 8
        elif wire_type == 2:
            size, at = read_varint(data, at)
            value, at = data[at : at + size], at + size
        elif wire_type == 5:
            value, at = data[at : at + 4], at + 4
        else:
            raise ValueError(f"wire type {wire_type}")
        out.setdefault(field, []).append(value)
    return out


def one(fields: Fields, field: int, default: Any) -> Any:
    return fields[field][-1] if field in fields else default


def i64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def double(fields: Fields, field: int) -> float:
    raw = one(fields, field, None)
    return 0.0 if raw is None else float(struct.unpack("<d", raw)[0])


def text(fields: Fields, field: int) -> str:
    return bytes(one(fields, field, b"")).decode()


def packed_ints(values: list[Any]) -> list[int]:
    out: list[int] = []
    for value in values:
        if isinstance(value, int):
            out.append(i64(value))
            continue
        at = 0
        while at < len(value):
            number, at = read_varint(value, at)
            out.append(i64(number))
    return out


# -- signing, SWC1 ---------------------------------------------------------------------------
def lp(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def peer_id(public_key: bytes) -> str:
    data = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + public_key
    number, out = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        out = B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def f32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def swc1(codec: int, shape: list[int], sections: list[bytes]) -> bytes:
    head = b"SWC1" + bytes([1, codec, 0, len(shape), len(sections), 0, 0, 0])
    head += b"".join(struct.pack("<Q", v) for v in [*shape, *(len(s) for s in sections)])
    crc = zlib.crc32(b"".join(sections), zlib.crc32(head))
    return head + struct.pack("<I", crc) + b"".join(sections)


def encode(delta: list[float], codec: str) -> tuple[bytes, list[float]]:
    """The SWC1 payload of ``delta`` and the values the coordinator will decode from it."""
    n = len(delta)
    if codec == "none":
        return swc1(0, [n], [struct.pack(f"<{n}f", *delta)]), [f32(v) for v in delta]
    if codec == "fp16":
        halves = struct.pack(f"<{n}e", *delta)
        return swc1(1, [n], [halves]), list(struct.unpack(f"<{n}e", halves))
    if codec == "int8":
        block, scales, levels, decoded = 64, [], [], []
        for start in range(0, n, block):
            part = delta[start : start + block]
            scale = f32(max(abs(v) for v in part) / 127)
            scales.append(scale)
            for v in part:
                level = 0 if scale == 0 else max(-127, min(127, round(v / scale)))
                levels.append(level)
                decoded.append(f32(level * scale))
        sections = [struct.pack("<I", block), struct.pack(f"<{len(scales)}f", *scales), struct.pack(f"<{n}b", *levels)]
        return swc1(3, [n], sections), decoded
    raise SystemExit(f"this client cannot encode codec {codec!r}")


# -- the calls -------------------------------------------------------------------------------
class Client:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.client_id, self.session = "", b""

    def metadata(self) -> list[tuple[str, bytes]]:
        return [(SESSION_KEY, self.session)]

    def unary(self, method: str, body: bytes, timeout: float = 30.0, auth: bool = True) -> Fields:
        call = self.channel.unary_unary(SERVICE + method)
        return parse(call(body, timeout=timeout, metadata=self.metadata() if auth else None))

    def register(self) -> None:
        stamp, nonce = int(time.time() * 1000), os.urandom(16)
        signed = REGISTER_TAG + lp(self.public) + struct.pack(">q", stamp) + lp(nonce) + lp(b"")
        capabilities = f_str(1, "none") + f_str(1, "fp16") + f_str(1, "int8") + f_str(3, "cpu") + f_int(4, 100)
        body = (
            f_int(1, 1) + f_bytes(2, self.public) + f_int(3, stamp) + f_bytes(4, nonce)
            + f_message(6, capabilities) + f_bytes(7, self.key.sign(signed))
        )  # fmt: skip
        reply = self.unary("Register", body, auth=False)
        self.client_id, self.session = text(reply, 1), bytes(one(reply, 2, b""))
        if self.client_id != peer_id(self.public):
            raise SystemExit(f"client id {self.client_id} is not the documented peer id {peer_id(self.public)}")

    def task(self, timeout_s: float = 60.0) -> Fields:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply = self.unary("GetTask", f_str(1, self.client_id) + f_double(2, 5.0), timeout=40)
            if one(reply, 1, 0) in (TRAIN, DONE):
                return reply
        raise SystemExit("no task within the deadline")

    def fetch(self) -> tuple[int, list[float]]:
        call = self.channel.unary_stream(SERVICE + "FetchAdapter")
        header: Fields | None = None
        data = bytearray()
        for raw in call(f_str(1, self.client_id), timeout=60, metadata=self.metadata()):
            chunk = parse(raw)
            if header is None:
                header = parse(one(chunk, 1, b""))
            data += one(chunk, 2, b"")
        assert header is not None
        size, digest = one(header, 3, 0), one(header, 4, b"")
        if len(data) != size or hashlib.sha256(data).digest() != digest:
            raise SystemExit("adapter size or SHA-256 mismatch")
        numel = sum(math.prod(packed_ints(parse(spec).get(2, []))) for spec in header.get(5, []))
        if 4 * numel != size:
            raise SystemExit(f"schema holds {numel} values, data {size} bytes")
        return i64(one(header, 1, 0)), list(struct.unpack(f"<{numel}f", data))

    def submit(self, task: Fields, payload: bytes) -> Fields:
        round_, version = i64(one(task, 2, 0)), i64(one(task, 3, 0))
        nonce, digest, samples = bytes(one(task, 6, b"")), hashlib.sha256(payload).digest(), 100
        signed = (
            UPDATE_TAG + lp(nonce) + struct.pack(">qqqQ", round_, version, samples, len(payload))
            + lp(b"codec") + lp(digest)
        )  # fmt: skip
        header = (
            f_str(1, self.client_id) + f_int(2, round_) + f_int(3, version) + f_int(4, samples)
            + f_int(5, len(payload)) + f_bytes(6, digest) + f_str(7, "codec") + f_double(8, 0.5)
            + f_bytes(9, self.key.sign(signed))
        )  # fmt: skip
        step = 4096
        chunks = [f_message(1, header) + f_bytes(2, payload[:step])]
        chunks += [f_bytes(2, payload[at : at + step]) for at in range(step, len(payload), step)]
        call = self.channel.stream_unary(SERVICE + "SubmitUpdate")
        return parse(call(iter(chunks), timeout=60, metadata=self.metadata()))

    def aggregated(self, round_: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for summary in map(parse, self.unary("Status", b"", auth=False).get(9, [])):
                if i64(one(summary, 1, 0)) == round_:
                    contributors = [bytes(c).decode() for c in summary.get(5, [])]
                    if text(summary, 2) != "completed" or self.client_id not in contributors:
                        raise SystemExit(f"round {round_} ended {text(summary, 2)!r}: {text(summary, 3)}")
                    return
            time.sleep(0.1)
        raise SystemExit(f"round {round_} was not aggregated in time")


def run_round(client: Client, index: int) -> dict[str, Any] | None:
    task = client.task()
    if one(task, 1, 0) == DONE:
        return None
    round_, codec = i64(one(task, 2, 0)), text(parse(one(task, 5, b"")), 2) or "none"
    version, adapter = client.fetch()
    delta = [((i % 7) - 3) * 1e-3 * (index + 1) for i in range(len(adapter))]
    payload, decoded = encode(delta, codec)
    reply = client.submit(task, payload)
    if not one(reply, 1, 0) or one(reply, 3, 0) != len(payload):
        raise SystemExit("update not accepted")
    client.aggregated(round_)
    new_version, new = client.fetch()
    error = max(abs(n - f32(a + d)) for n, a, d in zip(new, adapter, decoded, strict=True))
    return {"round": round_, "codec": codec, "version": [version, new_version], "bytes": len(payload), "error": error}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    client = Client(args.address)
    try:
        client.register()
        for index in range(args.rounds):
            result = run_round(client, index)
            if result is None:
                break
            print(json.dumps({"client_id": client.client_id, **result}), flush=True)
            if result["error"] > 1e-6 or result["version"][1] != result["version"][0] + 1:
                return 1
    finally:
        client.channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
