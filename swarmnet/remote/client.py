"""The caller's side: forward and backward calls of remote modules, routed over replicas with retries.

A call is tried on up to ``max_attempts`` replicas: a timeout, an unreachable peer, a reply that
breaks the protocol or holds non-finite values, or a refusal the server marks as retryable (it is
overloaded, draining or no longer hosts the module) bans that replica for a while and moves on. A
refusal of the request itself (too large, malformed) raises ``ProtocolError`` with the server's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from swarmnet.errors import PeerUnreachable, ProtocolError, RemoteFault, TransportError
from swarmnet.records import RecordPolicy
from swarmnet.remote.config import ClientConfig
from swarmnet.remote.directory import ModuleDirectory, Replica
from swarmnet.remote.routing import ReplicaRouter
from swarmnet.remote.server import RETRYABLE
from swarmnet.remote.wire import METHOD, decode_tensors, encode_message, encode_tensors, parse_reply
from swarmnet.transport.base import Transport

__all__ = ["ClientStatistics", "RemoteCaller"]


@dataclass(frozen=True)
class ClientStatistics:
    """What a caller sent, received and survived."""

    calls: int  # forward and backward calls that returned
    attempts: int  # requests sent, retries included
    failed_attempts: int  # attempts that timed out, failed or were refused
    bytes_sent: int
    bytes_received: int
    rejected_records: dict[str, int]


class _Refused(ProtocolError):
    """A server refused the request itself: no other replica would accept it either."""


class RemoteCaller:
    """Calls remote modules through ``transport``; one per peer, shared by its ``RemoteModule``s."""

    def __init__(self, transport: Transport, config: ClientConfig | None = None,
                 records: RecordPolicy | None = None) -> None:  # fmt: skip
        self.config = config or ClientConfig()
        self.config.validate()
        self._transport = transport
        self.directory = ModuleDirectory(transport, records)
        self.router = ReplicaRouter(self.config.routing)
        self._cache: dict[str, tuple[float, list[Replica]]] = {}
        self._calls = self._attempts = self._failed = self._sent = self._received = 0

    async def forward(self, uid: str, inputs: Sequence[torch.Tensor], *, codec: str | None = None) -> torch.Tensor:
        """``module(*inputs)`` computed by a replica of ``uid``."""
        return (await self._call(uid, "forward", list(inputs), codec))[0]

    async def backward(
        self, uid: str, inputs: Sequence[torch.Tensor], grad_output: torch.Tensor, *, codec: str | None = None
    ) -> list[torch.Tensor]:
        """Gradients of ``inputs`` given the output's gradient; the replica recomputes the forward."""
        return await self._call(uid, "backward", [*inputs, grad_output], codec)

    async def replicas(self, uid: str, *, refresh: bool = False) -> list[Replica]:
        """Live replicas of ``uid`` (cached for ``lookup_interval`` seconds)."""
        now = self._transport.clock.time()
        cached = self._cache.get(uid)
        if refresh or cached is None or now - cached[0] > self.config.lookup_interval:
            cached = (now, await self.directory.replicas(uid))
            self._cache[uid] = cached
        return [r for r in cached[1] if r.expires_at > now]

    def statistics(self) -> ClientStatistics:
        """A snapshot of this caller's traffic."""
        return ClientStatistics(
            calls=self._calls,
            attempts=self._attempts,
            failed_attempts=self._failed,
            bytes_sent=self._sent,
            bytes_received=self._received,
            rejected_records=self.directory.rejections(),
        )

    async def _call(self, uid: str, op: str, tensors: list[torch.Tensor], codec: str | None) -> list[torch.Tensor]:
        codec = codec or self.config.codec
        metas, payloads = encode_tensors(tensors, codec)
        request = encode_message({"uid": uid, "op": op, "codec": codec, "tensors": metas}, payloads)
        tried: set[str] = set()
        last: Exception | None = None
        for attempt in range(self.config.max_attempts):
            replica = await self._pick(uid, tensors[0].shape[0], frozenset(tried), refresh=attempt > 0)
            if replica is None:
                break
            tried.add(replica.peer_id)
            try:
                result = await self._attempt(replica.peer_id, request)
                _check_shapes(op, tensors, result)
            except _Refused:
                raise
            except (TransportError, RemoteFault) as error:
                self._failed += 1
                self.router.failed(replica.peer_id, self._transport.clock.time())
                last = error
                continue
            self._calls += 1
            return result
        raise PeerUnreachable(f"no replica of {uid} answered ({len(tried)} tried; last error: {last!r})")

    async def _pick(self, uid: str, samples: int, tried: frozenset[str], *, refresh: bool) -> Replica | None:
        now = self._transport.clock.time()
        replicas = await self.replicas(uid)
        replica = self.router.choose(replicas, now, samples=samples, exclude=tried)
        if replica is None and not refresh:
            replicas = await self.replicas(uid, refresh=True)
            replica = self.router.choose(replicas, now, samples=samples, exclude=tried)
        if replica is None and replicas:
            # Every replica failed us lately: a transient fault (a reset stream) should not fail the call
            # while one may still answer, so try again the one that failed longest ago.
            replica = min(replicas, key=lambda r: self.router.banned_until(r.peer_id))
        return replica

    async def _attempt(self, peer_id: str, request: bytes) -> list[torch.Tensor]:
        self._attempts += 1
        self._sent += len(request)
        loop = asyncio.get_running_loop()
        started = loop.time()  # virtual time in simulations, so simulated links count
        raw = await self._transport.call_unary(peer_id, METHOD, request, timeout=self.config.timeout)
        self._received += len(raw)
        reply = parse_reply(raw, self.config.limits)
        if reply.error is not None:
            if reply.error.startswith(RETRYABLE):
                raise ProtocolError(reply.error)
            self._failed += 1
            raise _Refused(reply.error)
        tensors = decode_tensors(reply.metas, reply.payloads)  # ProtocolError for a non-finite reply
        self.router.succeeded(peer_id, loop.time() - started)
        return tensors


def _check_shapes(op: str, sent: list[torch.Tensor], result: list[torch.Tensor]) -> None:
    """A reply must keep the batch (forward) or match the inputs' shapes (backward); ``ProtocolError`` if not."""
    if op == "forward":
        if len(result) != 1 or result[0].shape[:1] != sent[0].shape[:1]:
            raise ProtocolError("forward reply does not hold one output with the request's batch size")
    elif [t.shape for t in result] != [t.shape for t in sent[:-1]]:
        raise ProtocolError("backward reply's gradients do not match the inputs' shapes")
