"""An attacker on the in-memory network: its own key, hand-made DiLoCo records, and a state it serves.

It uses no trainer code: it signs records in the wire format under its own identity (which any
outsider can do), stores them in its own slots, and answers state-part requests with its blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import struct
from collections.abc import Callable

from swarmnet.identity import Identity
from swarmnet.records import Payload, sign_record
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport

ROUNDS = 10**6
STEP = 10**7


class _State(Payload):
    KIND = "diloco_state"
    layout: str
    rounds: int
    step: int
    digest: str
    size: int
    part_size: int
    parts: list[str]
    holding: bool = True


class _Progress(Payload):
    KIND = "diloco_progress"
    layout: str
    step: int


def zero_blob(numel: int, *, rounds: int = ROUNDS, step: int = STEP) -> bytes:
    """An all-zero state (parameters and momentum) in the wire layout, claiming ``rounds`` and ``step``."""
    return struct.pack("<4sQQQ", b"SWDS", step, rounds, numel) + bytes(8 * numel)


class Forger:
    """One identity announcing a far-ahead state and sync point for run ``run`` and serving that state."""

    def __init__(
        self,
        network: MemoryNetwork,
        run: str,
        schema: str,
        numel: int,
        *,
        rounds: int = ROUNDS,
        step: int = STEP,
        blob: bytes | None = None,
    ) -> None:
        """Claims ``rounds`` and ``step``; serves ``blob`` (default: all zeros with a header saying the same)."""
        self.identity = Identity.generate()
        self.transport: MemoryTransport = network.add_peer(self.identity.peer_id)
        self.run, self.schema, self.rounds, self.step = run, schema, rounds, step
        self.blob = zero_blob(numel, rounds=rounds, step=step) if blob is None else blob
        self.digest = hashlib.sha256(self.blob).hexdigest()
        self.part_size = max(1 << 20, -(-len(self.blob) // 64))
        self.progress: Callable[[], int] = lambda: step  # the sync step the progress record claims
        self.interval = 1.0  # seconds between re-announcements
        self.requests = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    async def start(self) -> None:
        """Serve the blob, announce, and keep announcing every second (records never go stale)."""
        await self.transport.add_unary_handler(f"{self.run}.diloco-state", self._serve)
        await self.announce()
        self._task = asyncio.create_task(self._repeat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def parts(self) -> list[str]:
        """The SHA-256 of each part of the served blob, as an announcement lists them."""
        return [
            hashlib.sha256(self.blob[i : i + self.part_size]).hexdigest()
            for i in range(0, len(self.blob), self.part_size)
        ]

    async def announce(self) -> None:
        state = _State(
            layout=self.schema, rounds=self.rounds, step=self.step, digest=self.digest, size=len(self.blob),
            part_size=self.part_size, parts=self.parts,
        )  # fmt: skip
        await self._put(f"{self.run}/diloco-state", state, 120.0)
        await self._put(f"{self.run}/diloco-progress", _Progress(layout=self.schema, step=self.progress()), 60.0)

    async def _put(self, key: str, payload: Payload, ttl: float) -> None:
        now, me = self.transport.clock.time(), self.peer_id
        value = sign_record(self.identity, payload, key=key, subkey=me, timestamp=now, expires_at=now + ttl)
        assert await self.transport.store(key, value, now + ttl, subkey=me)

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.announce()

    async def _serve(self, caller: str, request: bytes) -> bytes:
        index = int(json.loads(request)["part"])
        self.requests += 1
        return self.blob[index * self.part_size : (index + 1) * self.part_size]
