"""The servicer: authentication, field and stream bounds, in front of the round engine.

Handlers take parsed messages (``rpc.py`` parses the bytes and maps every ``Rejected`` to its
status) and raise ``Rejected`` for anything a client got wrong. Fields are bounded before they
are used (``request_limits.py``); an update stream is bounded in bytes (its declared size, at
most ``max_update_bytes``), in chunks (``2 + size / 1024``), in time (the header within 10 s,
the rest by the round's deadline) and in number (one stream per client). Every long-lived call
is capped per client (``concurrency.py``), so no client can pile up coroutines or buffers. No
request can take the coordinator down or change a round it was not accepted into.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterable

import grpc
import torch

from swarmnet.coordinator.concurrency import OpenCalls
from swarmnet.coordinator.open_round import OpenRound, check_header, check_update
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.request_limits import check_secagg, check_update_header, client_id_of, wait_of
from swarmnet.coordinator.rounds import RoundEngine
from swarmnet.coordinator.store import ClientRecord
from swarmnet.federated.signing import PROTOCOL_VERSION, SESSION_METADATA
from swarmnet.proto import federated_pb2 as pb

__all__ = ["CoordinatorServicer"]

_HISTORY_IN_STATUS = 50
_HEADER_WAIT_S = 10.0  # an update stream must deliver its header chunk within this
_BYTES_PER_CHUNK = 1024  # chunks must average at least this much data (bounds the chunk count)
_TEXT_SESSION = SESSION_METADATA.removesuffix("-bin")


class CoordinatorServicer:
    """Implements ``swarmnet.federated.v1.Coordinator`` over a ``RoundEngine``."""

    def __init__(self, engine: RoundEngine, registry: ClientRegistry) -> None:
        self.engine = engine
        self.registry = registry
        self._streams = OpenCalls(1, "update streams")
        self._awaiting_header = OpenCalls(1024, "update streams awaiting their header")  # all clients together
        self._polls = OpenCalls(4, "GetTask long polls")
        self._fetches = OpenCalls(2, "adapter downloads")
        self._secagg_calls = OpenCalls(2, "secure-aggregation calls")
        self._adapter: tuple[torch.Tensor, bytes, bytes] | None = None  # (tensor, its bytes, SHA-256)

    def streaming(self) -> frozenset[str]:
        """Clients whose update is streaming in now."""
        return self._streams.keys()

    def _caller(self, client_id: str, context: grpc.aio.ServicerContext) -> ClientRecord:
        client_id_of(client_id)
        metadata = dict(context.invocation_metadata() or ())
        session = metadata.get(SESSION_METADATA)
        if session is None and _TEXT_SESSION in metadata:
            raise Rejected(
                grpc.StatusCode.UNAUTHENTICATED, f"send the session token as binary metadata {SESSION_METADATA!r}"
            )
        return self.registry.authenticate(client_id, session if isinstance(session, bytes) else None)

    async def Register(self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext) -> pb.RegisterReply:
        record, session = self.registry.register(request)
        await self.engine.notify()
        return pb.RegisterReply(
            client_id=record.client_id, session=session, run=self.engine.config.run, protocol_version=PROTOCOL_VERSION
        )

    async def GetTask(self, request: pb.TaskRequest, context: grpc.aio.ServicerContext) -> pb.TaskReply:
        wait_s = wait_of(request)
        self._caller(request.client_id, context)
        with self._polls.hold(request.client_id):
            return await self.engine.task(request.client_id, wait_s)

    async def SubmitUpdate(
        self, chunks: AsyncIterator[pb.UpdateChunk], context: grpc.aio.ServicerContext
    ) -> pb.SubmitReply:
        try:
            async with asyncio.timeout(_HEADER_WAIT_S) as limit:
                with self._awaiting_header.hold(""):
                    header, record, round_, first = await self._open_stream(aiter(chunks), context)
                with self._streams.hold(record.client_id):
                    limit.reschedule(asyncio.get_running_loop().time() + round_.deadline - time.monotonic())
                    payload = await self._receive(header, first, chunks)
        except TimeoutError:
            raise Rejected(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the update stream did not finish before the round's deadline"
            ) from None
        submission = check_update(round_, record, header, payload, time.monotonic())
        await self.engine.submit(submission)
        return pb.SubmitReply(accepted=True, round=header.round, bytes_received=len(payload))

    async def _open_stream(
        self, chunks: AsyncIterator[pb.UpdateChunk], context: grpc.aio.ServicerContext
    ) -> tuple[pb.UpdateHeader, ClientRecord, OpenRound, bytes]:
        """Read the header chunk and check it and its sender."""
        first = await anext(chunks, None)
        if first is None:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "empty update stream")
        if not first.HasField("header"):
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "the first chunk must carry the update header")
        header = first.header
        check_update_header(header)
        record = self._caller(header.client_id, context)
        round_ = self._check_declared(header, record)
        return header, record, round_, first.data

    @staticmethod
    async def _receive(header: pb.UpdateHeader, first: bytes, chunks: AsyncIterator[pb.UpdateChunk]) -> bytes:
        """The payload, chunk by chunk, within the declared size and the chunk budget."""
        payload = bytearray(first)
        budget = 2 + header.payload_size // _BYTES_PER_CHUNK
        count = 1
        while True:
            if len(payload) > header.payload_size:
                raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "more update data than the header declared")
            chunk = await anext(chunks, None)
            if chunk is None:
                return bytes(payload)
            count += 1
            if count > budget:
                raise Rejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"more than {budget} chunks for {header.payload_size} B: chunks must average {_BYTES_PER_CHUNK} B",
                )
            if chunk.HasField("header"):
                raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "only the first chunk may carry a header")
            payload += chunk.data

    def _check_declared(self, header: pb.UpdateHeader, record: ClientRecord) -> OpenRound:
        limit = self.engine.config.max_update_bytes
        if header.payload_size > limit:
            raise Rejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"update of {header.payload_size} B exceeds the {limit} B limit"
            )
        round_ = self.engine.round
        if round_ is None:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, "no round is open")
        check_header(round_, record, header, time.monotonic())
        return round_

    async def FetchAdapter(
        self, request: pb.FetchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AdapterChunk]:
        self._caller(request.client_id, context)
        with self._fetches.hold(request.client_id):
            state = self.engine.state
            data, digest = self._adapter_bytes(state.adapter)
            header = pb.AdapterHeader(
                version=state.version,
                round=state.next_round,
                size=len(data),
                sha256=digest,
                schema=[pb.TensorSpec(name=s.name, shape=list(s.shape)) for s in state.schema.tensors],
            )
            step = self.engine.config.chunk_bytes
            yield pb.AdapterChunk(header=header, data=data[:step])
            for offset in range(step, len(data), step):
                yield pb.AdapterChunk(data=data[offset : offset + step])

    def _adapter_bytes(self, adapter: torch.Tensor) -> tuple[bytes, bytes]:
        """The adapter as little-endian float32 bytes and their digest, serialised once per version."""
        if self._adapter is None or self._adapter[0] is not adapter:
            data = adapter.contiguous().numpy().astype("<f4").tobytes()
            self._adapter = (adapter, data, hashlib.sha256(data).digest())
        return self._adapter[1], self._adapter[2]

    async def SecAgg(self, request: pb.SecAggRequest, context: grpc.aio.ServicerContext) -> pb.SecAggReply:
        check_secagg(request)
        self._caller(request.client_id, context)
        with self._secagg_calls.hold(request.client_id):
            return await self.engine.secagg(request.client_id, request)

    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusReply:
        engine, state = self.engine, self.engine.state
        round_ = engine.round
        # Under differential privacy who was drawn must stay secret (amplification by sampling
        # assumes it): callers get counts from the telemetry, never client ids.
        private = engine.config.privacy is not None

        def shown(ids: Iterable[str]) -> list[str]:
            return [] if private else list(ids)

        history = [
            pb.RoundSummary(
                round=r.round,
                outcome=r.outcome,
                reason=r.reason,
                selected=shown(r.selected),
                contributors=shown(r.contributors),
                uplink_bytes=r.uplink_bytes,
                seconds=r.seconds,
                train_loss=r.train_loss,
                global_version=r.global_version,
                secure_aggregation=r.secure_aggregation,
                epsilon=r.epsilon,
            )
            for r in state.history[-_HISTORY_IN_STATUS:]
        ]
        return pb.StatusReply(
            run=engine.config.run,
            round=round_.number if round_ else state.next_round,
            phase="done" if engine.done() else engine.phase,
            global_version=state.version,
            registered=len(self.registry.clients),
            active=len(self.registry.active()),
            selected=shown(round_.selected) if round_ else [],
            submitted=shown(sorted(round_.submissions)) if round_ else [],
            history=history,
            strategy=engine.config.strategy_name,
            epsilon=engine.epsilon(),
            protocol_version=PROTOCOL_VERSION,
        )
