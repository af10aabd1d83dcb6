"""The gRPC surface: raw bytes in, parsed and guarded calls to the servicer, statuses out.

The service is registered with no request deserializer, so a message that does not parse reaches
this module as bytes and is answered INVALID_ARGUMENT with a one-line log, instead of gRPC's own
UNKNOWN and a traceback per request. Every call then runs under one guard: a ``Rejected`` becomes
its status (logged in one line, at most once a second per method and status, so a flood of bad
requests cannot flood the log); anything else is a coordinator fault, logged with its traceback
and answered INTERNAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeAlias, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.service import CoordinatorServicer
from swarmnet.proto import federated_pb2 as pb

__all__ = ["SERVICE_NAME", "coordinator_handler"]

logger = logging.getLogger(__name__)

SERVICE_NAME = "swarmnet.federated.v1.Coordinator"
Request = TypeVar("Request", bound=Message)
Context: TypeAlias = grpc.aio.ServicerContext


def coordinator_handler(servicer: CoordinatorServicer) -> grpc.GenericRpcHandler:
    """The ``Coordinator`` service over ``servicer``, taking requests as raw bytes."""
    log = _RejectionLog()
    serialize = _serialize
    handlers = {
        "Register": grpc.unary_unary_rpc_method_handler(
            _unary("Register", pb.RegisterRequest, servicer.Register, log), response_serializer=serialize
        ),
        "GetTask": grpc.unary_unary_rpc_method_handler(
            _unary("GetTask", pb.TaskRequest, servicer.GetTask, log), response_serializer=serialize
        ),
        "SubmitUpdate": grpc.stream_unary_rpc_method_handler(
            _client_stream("SubmitUpdate", pb.UpdateChunk, servicer.SubmitUpdate, log), response_serializer=serialize
        ),
        "FetchAdapter": grpc.unary_stream_rpc_method_handler(
            _server_stream("FetchAdapter", pb.FetchRequest, servicer.FetchAdapter, log), response_serializer=serialize
        ),
        "SecAgg": grpc.unary_unary_rpc_method_handler(
            _unary("SecAgg", pb.SecAggRequest, servicer.SecAgg, log), response_serializer=serialize
        ),
        "Status": grpc.unary_unary_rpc_method_handler(
            _unary("Status", pb.StatusRequest, servicer.Status, log), response_serializer=serialize
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def parse(kind: type[Request], data: bytes) -> Request:
    """``data`` as a ``kind`` message; ``Rejected(INVALID_ARGUMENT)`` if it is not one."""
    try:
        return kind.FromString(data)
    except DecodeError as error:
        raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {kind.__name__}: {error}") from None


def _unary(
    name: str, kind: type[Request], method: Callable[[Request, Context], Awaitable[Message]], log: _RejectionLog
) -> Callable[[bytes, Context], Awaitable[Message]]:
    async def handle(data: bytes, context: Context) -> Message:
        try:
            return await method(parse(kind, data), context)
        except Exception as error:
            await _abort(name, error, context, log)

    return handle


def _client_stream(
    name: str,
    kind: type[Request],
    method: Callable[[AsyncIterator[Request], Context], Awaitable[Message]],
    log: _RejectionLog,
) -> Callable[[AsyncIterator[bytes], Context], Awaitable[Message]]:
    async def handle(stream: AsyncIterator[bytes], context: Context) -> Message:
        async def messages() -> AsyncIterator[Request]:
            async for data in stream:
                yield parse(kind, data)

        try:
            return await method(messages(), context)
        except Exception as error:
            await _abort(name, error, context, log)

    return handle


def _server_stream(
    name: str, kind: type[Request], method: Callable[[Request, Context], AsyncIterator[Message]], log: _RejectionLog
) -> Callable[[bytes, Context], AsyncIterator[Message]]:
    async def handle(data: bytes, context: Context) -> AsyncIterator[Message]:
        try:
            async for reply in method(parse(kind, data), context):
                yield reply
        except Exception as error:
            await _abort(name, error, context, log)

    return handle


async def _abort(name: str, error: Exception, context: Context, log: _RejectionLog) -> NoReturn:
    if isinstance(error, grpc.aio.AbortError):
        raise error
    if isinstance(error, Rejected):
        log.note(name, error)
        await context.abort(error.code, error.message)
    logger.error("%s failed", name, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal coordinator error (logged)")
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


class _RejectionLog:
    """One warning line per rejection, at most one a second per (method, status); the rest are counted."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval = interval_s
        self._last: dict[tuple[str, grpc.StatusCode], float] = {}
        self._suppressed: dict[tuple[str, grpc.StatusCode], int] = {}

    def note(self, method: str, rejected: Rejected) -> None:
        key, now = (method, rejected.code), time.monotonic()
        if now - self._last.get(key, -self._interval) < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        more = f" (and {suppressed} more like it)" if suppressed else ""
        logger.warning("%s rejected (%s): %s%s", method, rejected.code.name, rejected.message[:300], more)
