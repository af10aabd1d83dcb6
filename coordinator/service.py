"""The gRPC servicer: authentication, size limits and statuses in front of the round engine.

Every handler turns a ``Rejected`` into the gRPC status it names and logs the reason; anything
unexpected is logged with its traceback and answered with INTERNAL. No request can take the
coordinator down or change a round it was not accepted into.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from swarmnet.coordinator.open_round import check_header, check_update
from swarmnet.coordinator.proto import federated_pb2 as pb
from swarmnet.coordinator.proto import federated_pb2_grpc as pb_grpc
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.rounds import RoundEngine
from swarmnet.coordinator.store import ClientRecord
from swarmnet.federated.signing import PROTOCOL_VERSION, SESSION_METADATA

__all__ = ["CoordinatorServicer"]

logger = logging.getLogger(__name__)

_HISTORY_IN_STATUS = 50
Reply = TypeVar("Reply")


def _guarded(
    handler: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Reply]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Reply]]:
    """Map ``Rejected`` to its status and anything unexpected to INTERNAL, logging both."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Reply:
        try:
            return await handler(self, request, context)
        except Rejected as rejected:
            logger.warning("%s rejected (%s): %s", handler.__name__, rejected.code.name, rejected.message)
            error: tuple[grpc.StatusCode, str] = (rejected.code, rejected.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed", handler.__name__)
            error = (grpc.StatusCode.INTERNAL, "internal coordinator error (logged)")
        await context.abort(*error)
        raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises

    return wrapper


class CoordinatorServicer(pb_grpc.CoordinatorServicer):
    """Implements ``swarmnet.federated.v1.Coordinator`` over a ``RoundEngine``."""

    def __init__(self, engine: RoundEngine, registry: ClientRegistry) -> None:
        self.engine = engine
        self.registry = registry

    def _caller(self, client_id: str, context: grpc.aio.ServicerContext) -> ClientRecord:
        session = dict(context.invocation_metadata() or ()).get(SESSION_METADATA)
        return self.registry.authenticate(client_id, session if isinstance(session, bytes) else None)

    @_guarded
    async def Register(self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext) -> pb.RegisterReply:
        record, session = self.registry.register(request)
        await self.engine.notify()
        return pb.RegisterReply(
            client_id=record.client_id, session=session, run=self.engine.config.run, protocol_version=PROTOCOL_VERSION
        )

    @_guarded
    async def GetTask(self, request: pb.TaskRequest, context: grpc.aio.ServicerContext) -> pb.TaskReply:
        self._caller(request.client_id, context)
        return await self.engine.task(request.client_id, request.wait_s)

    @_guarded
    async def SubmitUpdate(
        self, request_iterator: AsyncIterator[pb.UpdateChunk], context: grpc.aio.ServicerContext
    ) -> pb.SubmitReply:
        header, record, payload = await self._receive(request_iterator, context)
        round_ = self.engine.round
        if round_ is None:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, "no round is open")
        submission = check_update(round_, record, header, payload, time.monotonic())
        await self.engine.submit(submission)
        return pb.SubmitReply(accepted=True, round=header.round, bytes_received=len(payload))

    async def _receive(
        self, chunks: AsyncIterator[pb.UpdateChunk], context: grpc.aio.ServicerContext
    ) -> tuple[pb.UpdateHeader, ClientRecord, bytes]:
        header: pb.UpdateHeader | None = None
        record: ClientRecord | None = None
        payload = bytearray()
        async for chunk in chunks:
            if header is None:
                if not chunk.HasField("header"):
                    raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "the first chunk must carry the update header")
                header, record = chunk.header, self._caller(chunk.header.client_id, context)
                self._check_declared(header, record)
            elif chunk.HasField("header"):
                raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "only the first chunk may carry a header")
            payload += chunk.data
            if len(payload) > header.payload_size:
                raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "more update data than the header declared")
        if header is None or record is None:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "empty update stream")
        return header, record, bytes(payload)

    def _check_declared(self, header: pb.UpdateHeader, record: ClientRecord) -> None:
        limit = self.engine.config.max_update_bytes
        if header.payload_size > limit:
            raise Rejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"update of {header.payload_size} B exceeds the {limit} B limit"
            )
        round_ = self.engine.round
        if round_ is None:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, "no round is open")
        check_header(round_, record, header, time.monotonic())

    async def FetchAdapter(
        self, request: pb.FetchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AdapterChunk]:
        try:
            self._caller(request.client_id, context)
        except Rejected as rejected:
            logger.warning("FetchAdapter rejected (%s): %s", rejected.code.name, rejected.message)
            await context.abort(rejected.code, rejected.message)
        state = self.engine.state
        data = state.adapter.contiguous().numpy().astype("<f4").tobytes()
        header = pb.AdapterHeader(
            version=state.version,
            round=state.next_round,
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            schema=[pb.TensorSpec(name=s.name, shape=list(s.shape)) for s in state.schema.tensors],
        )
        step = self.engine.config.chunk_bytes
        yield pb.AdapterChunk(header=header, data=data[:step])
        for offset in range(step, len(data), step):
            yield pb.AdapterChunk(data=data[offset : offset + step])

    @_guarded
    async def SecAgg(self, request: pb.SecAggRequest, context: grpc.aio.ServicerContext) -> pb.SecAggReply:
        self._caller(request.client_id, context)
        return await self.engine.secagg(request.client_id, request)

    @_guarded
    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusReply:
        engine, state = self.engine, self.engine.state
        round_ = engine.round
        history = [
            pb.RoundSummary(
                round=r.round,
                outcome=r.outcome,
                reason=r.reason,
                selected=list(r.selected),
                contributors=list(r.contributors),
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
            selected=list(round_.selected) if round_ else [],
            submitted=sorted(round_.submissions) if round_ else [],
            history=history,
            strategy=engine.config.strategy_name,
            epsilon=engine.epsilon(),
            protocol_version=PROTOCOL_VERSION,
        )
