"""The module server: hosts named modules on this peer and answers remote forward/backward calls.

Every request is checked against ``RequestLimits`` before any tensor is decoded; anything wrong gets
an error reply naming the reason (the caller raises it as a ``ProtocolError``) and the server carries
on. The server announces each module in signed DHT records (``swarmnet.remote.records``) refreshed
every ``announce_interval``, with its measured throughput and queue; ``stop()`` announces it draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from swarmnet.compression import codec_names
from swarmnet.errors import ConfigError, ProtocolError, TransportClosed
from swarmnet.identity import Identity
from swarmnet.keyspace import REMOTE_MODULE_MAX_LIFETIME
from swarmnet.records import sign_record
from swarmnet.remote.batching import BatcherStatistics, ModuleBatcher
from swarmnet.remote.config import ServerConfig
from swarmnet.remote.hosted import HostedModule
from swarmnet.remote.records import (
    MAX_PREFIX_UIDS,
    ModuleRecord,
    ModuleState,
    PrefixRecord,
    module_key,
    prefix_key,
    prefix_of,
)
from swarmnet.remote.wire import (
    METHOD,
    Request,
    decode_tensors,
    encode_message,
    encode_tensors,
    error_reply,
    parse_request,
)
from swarmnet.transport.base import Transport

__all__ = ["ModuleServer", "ServerStatistics"]

logger = logging.getLogger(__name__)
RETRYABLE = ("overloaded", "draining", "not hosted")  # reasons a caller may try another replica for


@dataclass(frozen=True)
class ServerStatistics:
    """What a module server did: per-module work, refused requests and announcements."""

    modules: dict[str, BatcherStatistics]
    refused: dict[str, int]  # reason category -> requests refused
    announcements: int
    failed_announcements: int


class ModuleServer:
    """Serves ``modules`` over ``transport`` under ``identity`` (the transport's peer)."""

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        modules: Sequence[HostedModule],
        config: ServerConfig | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.config.validate()
        if transport.peer_id != identity.peer_id:
            raise ConfigError(f"transport peer id {transport.peer_id} is not the identity's {identity.peer_id}")
        if len({m.uid for m in modules}) != len(modules):
            raise ConfigError("two hosted modules share a uid")
        self._transport, self._identity = transport, identity
        self._batchers = {m.uid: ModuleBatcher(m, self.config) for m in modules}
        self._tasks: list[asyncio.Task[None]] = []
        self._state: ModuleState = "joining"
        self._refused: dict[str, int] = {}
        self._announcements = self._failed_announcements = 0
        self._last_expiry = 0.0

    async def start(self, *, online: bool = True) -> None:
        """Serve calls and announce every module online; with ``online=False``, announce the modules as
        joining (visible, but not called: e.g. while a stage server fetches its state) until ``go_online()``."""
        await self._transport.add_unary_handler(METHOD, self._handle)
        for uid, batcher in self._batchers.items():
            self._tasks.append(asyncio.create_task(batcher.run(), name=f"swarmnet-remote-{uid}"))
        self._state = "online" if online else "joining"
        await self.announce()
        self._tasks.append(asyncio.create_task(self._announce_loop(), name="swarmnet-remote-announce"))

    async def go_online(self) -> bool:
        """Serve calls from now on and announce it; returns whether every store was accepted."""
        self._state = "online"
        return await self.announce()

    async def stop(self, *, announce: bool = True) -> None:
        """Announce the modules draining (unless ``announce`` is false), then stop computing. Idempotent."""
        if self._state != "draining" and announce:
            self._state = "draining"
            with contextlib.suppress(TransportClosed):
                await self.announce()
        self._state = "draining"
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for uid, batcher in self._batchers.items():  # their callers try another replica at once
            batcher.fail_waiting(f"draining: this server stopped serving {uid}")

    async def announce(self) -> bool:
        """Store a fresh record per module and per prefix; returns whether every store was accepted."""
        now = self._transport.clock.time()
        # The DHT keeps whichever value expires last: a new state (draining) must outlive the last record.
        expires = min(max(now + self.config.record_ttl, self._last_expiry + 1e-3), now + REMOTE_MODULE_MAX_LIFETIME)
        self._last_expiry = expires
        stores = [self._store(module_key(uid), self._module_record(uid, b), now, expires)
                  for uid, b in self._batchers.items()]  # fmt: skip
        for prefix, uids in self._prefixes().items():
            stores.append(self._store(prefix_key(prefix), PrefixRecord(prefix=prefix, uids=uids), now, expires))
        results = await asyncio.gather(*stores)
        self._announcements += sum(results)
        self._failed_announcements += len(results) - sum(results)
        return all(results)

    def statistics(self) -> ServerStatistics:
        """A snapshot of the server's work."""
        return ServerStatistics(
            modules={uid: b.statistics() for uid, b in self._batchers.items()},
            refused=dict(self._refused),
            announcements=self._announcements,
            failed_announcements=self._failed_announcements,
        )

    def _module_record(self, uid: str, batcher: ModuleBatcher) -> ModuleRecord:
        stats = batcher.statistics()
        return ModuleRecord(uid=uid, throughput=stats.throughput, queue=stats.queue, state=self._state,
                            max_batch=self.config.max_batch)  # fmt: skip

    def _prefixes(self) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {}
        for uid in self._batchers:
            prefix = prefix_of(uid)
            if prefix is not None:
                found.setdefault(prefix, []).append(uid)
        if any(len(uids) > MAX_PREFIX_UIDS for uids in found.values()):
            logger.warning("more than %d uids under one prefix: only the first are announced", MAX_PREFIX_UIDS)
        return {p: tuple(sorted(uids)[:MAX_PREFIX_UIDS]) for p, uids in found.items()}

    async def _store(self, key: str, payload: ModuleRecord | PrefixRecord, now: float, expires: float) -> bool:
        peer = self._identity.peer_id
        value = sign_record(self._identity, payload, key=key, subkey=peer, timestamp=now, expires_at=expires)
        return await self._transport.store(key, value, expires, subkey=peer)

    async def _announce_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.announce_interval)
            try:
                await self.announce()
            except TransportClosed:
                return

    async def _handle(self, caller: str, message: bytes) -> bytes:
        try:
            request = parse_request(message, self.config.limits)
            return await self._serve(request)
        except Exception as error:  # whatever a module raises on an input, the server carries on
            reason = str(error) or type(error).__name__
            category = reason.split(":", 1)[0][:40] if isinstance(error, ProtocolError) else "compute failed"
            self._refused[category] = self._refused.get(category, 0) + 1
            logger.debug("refused a request from %s: %s", caller, reason)
            return error_reply(reason if isinstance(error, ProtocolError) else f"{type(error).__name__}: {reason}")

    async def _serve(self, request: Request) -> bytes:
        batcher = self._batchers.get(request.uid)
        if batcher is None:
            raise ProtocolError(f"not hosted: no module {request.uid[:128]!r} on this server")
        if self._state == "joining":
            raise ProtocolError(f"not hosted: {request.uid} is still joining on this server")
        if self._state != "online":
            raise ProtocolError(f"draining: this server no longer serves {request.uid}")
        if request.codec not in codec_names():
            raise ProtocolError(f"unknown codec {request.codec[:32]!r}")
        expected = batcher.hosted.num_inputs + (request.op == "backward")
        if len(request.metas) != expected:
            raise ProtocolError(f"{request.op} of {request.uid} takes {expected} tensors, got {len(request.metas)}")
        if len({m.shape[0] for m in request.metas}) != 1:
            raise ProtocolError("every tensor of a request must have the same first (batch) dimension")
        tensors = decode_tensors(request.metas, request.payloads)
        results = await batcher.submit(request.op, tensors)
        metas, payloads = encode_tensors(results, request.codec)
        return encode_message({"ok": True, "tensors": metas}, payloads)
