"""``MemoryTransport``: one peer's ``Transport`` on a ``MemoryNetwork`` (see ``network.py``).

Calls into a peer run as tasks owned by that peer, so killing or shutting it down cancels them
and its callers see ``PeerUnreachable`` at once, as they would on a reset connection.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from swarmnet.clock import Clock
from swarmnet.errors import PeerUnreachable, ProtocolError, RemotePeerError, RequestTimeout, TransportClosed
from swarmnet.transport.base import StoredValue, StreamHandler, Transport, TransportLimits, UnaryHandler
from swarmnet.transport.memory.link import END, Failure, Link, Message, describe, drain

if TYPE_CHECKING:
    from swarmnet.transport.memory.network import MemoryNetwork

__all__ = ["MemoryTransport"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def _lost() -> NoReturn:
    """Wait forever: the message was lost, so only the caller's timeout ends the wait."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable: nothing resolves this future")


def _not_cancelled_by_caller() -> bool:
    # A handler task cancelled by its (killed or shut down) peer reaches us as CancelledError
    # too; it is ours to turn into PeerUnreachable only if nobody cancelled the calling task.
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


class MemoryTransport(Transport):
    """One peer on a ``MemoryNetwork``. Create it with ``MemoryNetwork.add_peer``."""

    def __init__(self, network: MemoryNetwork, peer_id: str) -> None:
        self._network = network
        self._peer_id = peer_id
        self._unary_handlers: dict[str, UnaryHandler] = {}
        self._stream_handlers: dict[str, StreamHandler] = {}
        # Handlers serving calls into this peer, and our open outgoing streams. Dicts, not sets:
        # insertion order keeps cancellation order, hence a seeded simulation, reproducible.
        self._tasks: dict[asyncio.Task[Any], None] = {}
        self._inboxes: dict[asyncio.Queue[Message], None] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryTransport({self._peer_id!r}{', closed' if self._closed else ''})"

    @property
    def peer_id(self) -> str:
        """This peer's id on the network."""
        return self._peer_id

    @property
    def clock(self) -> Clock:
        """The network's clock."""
        return self._network.clock

    @property
    def limits(self) -> TransportLimits:
        """The network's limits."""
        return self._network.limits

    @property
    def closed(self) -> bool:
        """Whether this peer was shut down or killed."""
        return self._closed

    async def store(self, key: str, value: bytes, expires_at: float, subkey: str | None = None) -> bool:
        """Store in the shared DHT after one simulated trip; ``False`` if refused or dropped."""
        self._check_open()
        network = self._network
        network._dht_stores += 1
        if len(value) > network.limits.max_value_bytes:
            return False  # refused before it leaves, as the real DHT client does
        arrived = await network._dht_trip()
        self._check_open()
        if not arrived:
            return False
        accepted = network._dht.store(key, value, expires_at, subkey, network.clock.time())
        network._dht_stores_accepted += accepted
        return accepted

    async def get(self, key: str) -> dict[str | None, StoredValue]:
        """Read the live values under ``key`` after one simulated trip; ``{}`` if none or dropped."""
        self._check_open()
        network = self._network
        network._dht_gets += 1
        arrived = await network._dht_trip()
        self._check_open()
        return network._dht.get(key, network.clock.time()) if arrived else {}

    async def add_unary_handler(self, method: str, handler: UnaryHandler) -> None:
        """Serve ``method`` (replacing an earlier handler for it)."""
        self._check_open()
        self._unary_handlers[method] = handler

    async def add_stream_handler(self, method: str, handler: StreamHandler) -> None:
        """Serve streaming ``method`` (replacing an earlier handler for it)."""
        self._check_open()
        self._stream_handlers[method] = handler

    async def call_unary(self, peer_id: str, method: str, request: bytes, *, timeout: float | None = None) -> bytes:
        """Call ``method`` on ``peer_id``; see ``Transport.call_unary`` for the errors raised."""
        self._check_open()
        limits = self._network.limits
        if len(request) > limits.max_message_bytes:
            raise ProtocolError(
                f"request of {len(request)} bytes exceeds max_message_bytes={limits.max_message_bytes}"
            )
        deadline = limits.default_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(deadline):
                return await self._exchange(peer_id, method, request)
        except TimeoutError:
            raise RequestTimeout(f"{method!r} on {peer_id} did not answer within {deadline} s") from None

    def call_stream(
        self, peer_id: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream ``requests`` to ``method`` on ``peer_id`` while yielding its responses.

        Each item takes its own hop delay but items stay in order; a lost item stalls that
        direction (the next wait times out). Nothing happens until the first response is awaited.
        """
        return self._stream(peer_id, method, requests, self.limits.default_timeout if timeout is None else timeout)

    async def visible_addresses(self) -> list[str]:
        """In-memory peers have no multiaddrs."""
        self._check_open()
        return []

    async def shutdown(self) -> None:
        """Leave the network, cancel handlers serving calls into us and wait for them. Idempotent."""
        self._close_now()
        current = asyncio.current_task()
        pending = [task for task in self._tasks if task is not current]
        if pending:
            await asyncio.wait(pending)

    # -- internals ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(f"transport {self._peer_id} is shut down")

    def _close_now(self) -> None:
        """Synchronous part of shutdown, shared with ``MemoryNetwork.kill``."""
        if self._closed:
            return
        self._closed = True
        self._network._unregister(self)
        self._unary_handlers.clear()
        self._stream_handlers.clear()
        for task in self._tasks:
            task.cancel()
        for inbox in self._inboxes:
            inbox.put_nowait(Failure(TransportClosed, f"transport {self._peer_id} is shut down"))

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run a handler for an incoming call as its own task, cancelled if this peer goes away."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks[task] = None
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled():
            task.exception()  # the caller reports it; don't let asyncio log it as never retrieved

    async def _arrive(self, peer_id: str, nbytes: int) -> MemoryTransport:
        """Carry a call's first message to ``peer_id``; return the remote if it can serve the call."""
        if not await self._network._hop(nbytes):
            await _lost()
        self._check_open()
        remote = self._network._reachable(self._peer_id, peer_id)
        if remote is None:
            raise PeerUnreachable(f"peer {peer_id} is unreachable from {self._peer_id}")
        return remote

    async def _exchange(self, peer_id: str, method: str, request: bytes) -> bytes:
        """One unary call: request hop, remote handler task, response hop."""
        remote = await self._arrive(peer_id, len(request))
        handler = remote._unary_handlers.get(method)
        if handler is None:
            raise PeerUnreachable(f"peer {peer_id} does not serve {method!r}")
        task = remote._spawn(_serve_unary(handler, self._peer_id, request))
        failure: str | None = None
        try:
            response = await task
        except asyncio.CancelledError:
            if task.cancelled() and _not_cancelled_by_caller():
                raise PeerUnreachable(f"peer {peer_id} went away while serving {method!r}") from None
            raise
        except Exception as error:
            logger.debug("%s failed serving %r for %s", peer_id, method, self._peer_id, exc_info=True)
            failure, response = describe(error), b""
        nbytes = len(response) if failure is None else len(failure)
        if not await self._network._hop(nbytes) or self._network._lost_to_cut(peer_id, self._peer_id):
            await _lost()
        self._check_open()
        if failure is not None:
            raise RemotePeerError(f"{peer_id} failed serving {method!r}: {failure}")
        limit = self._network.limits.max_message_bytes
        if len(response) > limit:
            raise ProtocolError(f"{peer_id} answered {method!r} with {len(response)} bytes, over {limit}")
        return response

    async def _stream(
        self, peer_id: str, method: str, requests: AsyncIterable[bytes], deadline: float
    ) -> AsyncGenerator[bytes, None]:
        self._check_open()
        network, caller = self._network, self._peer_id
        limit = network.limits.max_message_bytes
        inbox: asyncio.Queue[Message] = asyncio.Queue()  # responses, end or failure, for us
        self._inboxes[inbox] = None
        tasks: list[asyncio.Task[Any]] = []
        links: list[Link] = []
        try:
            try:
                async with asyncio.timeout(deadline):
                    remote = await self._arrive(peer_id, 0)  # the stream-open message
            except TimeoutError:
                raise RequestTimeout(f"opening {method!r} on {peer_id} timed out after {deadline} s") from None
            handler = remote._stream_handlers.get(method)
            if handler is None:
                raise PeerUnreachable(f"peer {peer_id} does not serve {method!r}")
            to_remote: asyncio.Queue[Message] = asyncio.Queue()
            uplink = Link(lambda n: network._transmit_between(caller, peer_id, n), to_remote.put_nowait)
            downlink = Link(lambda n: network._transmit_between(peer_id, caller, n), inbox.put_nowait)
            links += (uplink, downlink)
            serving = remote._spawn(_serve_stream(handler, caller, drain(to_remote), downlink))
            reset = Failure(PeerUnreachable, f"peer {peer_id} went away while serving {method!r}")
            serving.add_done_callback(functools.partial(_report_reset, inbox, reset))
            tasks += (serving, asyncio.get_running_loop().create_task(_pump(requests, uplink, inbox, limit)))
            while True:
                try:
                    async with asyncio.timeout(deadline):
                        message = await inbox.get()
                except TimeoutError:
                    raise RequestTimeout(f"{method!r} on {peer_id} sent nothing for {deadline} s") from None
                if isinstance(message, Failure):
                    raise message.error()
                if not isinstance(message, bytes):
                    return  # END: the handler finished
                if len(message) > limit:
                    raise ProtocolError(
                        f"{peer_id} streamed a {len(message)}-byte message for {method!r}, over {limit}"
                    )
                yield message
        finally:
            # Runs when the stream ends, fails, or the consumer stops early (aclose or GC).
            self._inboxes.pop(inbox, None)
            for link in links:
                link.close()
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


def _report_reset(inbox: asyncio.Queue[Message], reset: Failure, serving: asyncio.Task[None]) -> None:
    """Tell the caller at once when the remote peer's death cancels the handler of its stream."""
    if serving.cancelled():
        inbox.put_nowait(reset)


async def _serve_unary(handler: UnaryHandler, caller: str, request: bytes) -> bytes:
    response = await handler(caller, request)
    if not isinstance(response, bytes):
        raise TypeError(f"a unary handler must return bytes, not {type(response).__name__}")
    return response


async def _serve_stream(handler: StreamHandler, caller: str, requests: AsyncIterator[bytes], downlink: Link) -> None:
    """Run a stream handler on the remote peer, sending its responses, then END or its failure."""
    responses: AsyncIterator[bytes] | None = None
    try:
        responses = handler(caller, requests)
        async for response in responses:
            if not isinstance(response, bytes):
                raise TypeError(f"a stream handler must yield bytes, not {type(response).__name__}")
            downlink.send(response)
    except Exception as error:
        logger.debug("stream handler failed serving %s", caller, exc_info=True)
        downlink.send(Failure(RemotePeerError, f"stream handler failed: {describe(error)}"))
    else:
        downlink.send(END)
    finally:
        # Close both generators now rather than whenever the garbage collector gets to them.
        for generator in (responses, requests):
            aclose = getattr(generator, "aclose", None)
            if aclose is not None:
                await aclose()


async def _pump(requests: AsyncIterable[bytes], uplink: Link, inbox: asyncio.Queue[Message], limit: int) -> None:
    """Feed the caller's requests to the remote while the caller reads responses."""
    iterator = aiter(requests)
    try:
        async for request in iterator:
            if len(request) > limit:
                message = f"stream request of {len(request)} bytes exceeds max_message_bytes={limit}"
                inbox.put_nowait(Failure(ProtocolError, message))
                return
            uplink.send(request)
        uplink.send(END)
    except Exception as error:  # the caller's own iterator broke: raise it in the caller as it is
        inbox.put_nowait(Failure(type(error), str(error), cause=error))
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
