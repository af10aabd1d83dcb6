"""One direction of an in-memory stream: ordered, delayed and lossy, like a TCP connection.

Stream items are pipelined: each one is scheduled to arrive ``delay`` after it was sent (but
never before the item sent ahead of it), instead of the sender sleeping ``delay`` per item, so a
long stream over a slow link costs one latency, not one latency per item. A lost item stalls
the direction for good, as a dead TCP connection does: the receiver then hits its timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["END", "Failure", "Link", "Message", "describe", "drain"]


class _End:
    """The sender finished its side of the stream."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final = _End()


@dataclass(frozen=True, slots=True)
class Failure:
    """The stream failed: the receiver raises ``error()``.

    Errors that crossed the network are rebuilt from ``kind`` and ``message`` (a remote traceback
    means nothing here); a local error, such as the caller's own request iterator failing, is
    carried as ``cause`` and raised as it is.
    """

    kind: type[Exception]
    message: str
    cause: Exception | None = None

    def error(self) -> Exception:
        """The exception to raise for this failure."""
        return self.cause if self.cause is not None else self.kind(self.message)


Message = bytes | _End | Failure


class Link:
    """Delivers messages from one peer to another in order, each after its own hop delay.

    ``transmit(nbytes)`` draws the fate of one message: its delay in seconds, or ``None`` when it
    is lost. ``deliver`` hands an arrived message to the receiver (an ``asyncio.Queue.put_nowait``).
    """

    __slots__ = ("_deliver", "_loop", "_pending", "_stalled", "_timer", "_timer_at", "_transmit")

    def __init__(self, transmit: Callable[[int], float | None], deliver: Callable[[Message], None]) -> None:
        self._transmit = transmit
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()
        self._pending: deque[tuple[float, Message]] = deque()  # arrival times never decrease
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._stalled = False

    def send(self, message: Message) -> None:
        """Put ``message`` on the wire; it arrives later, or never if it (or an earlier one) is lost."""
        if self._stalled:
            return
        delay = self._transmit(len(message) if isinstance(message, bytes) else 0)
        if delay is None:
            self._stalled = True
            self._pending.clear()
            return
        now = self._loop.time()
        if delay <= 0.0 and not self._pending:
            self._deliver(message)
            return
        arrival = max(now + delay, self._pending[-1][0]) if self._pending else now + delay
        self._pending.append((arrival, message))
        if self._timer is None:
            self._schedule(arrival)

    def close(self) -> None:
        """Discard everything in flight; later sends are ignored."""
        self._stalled = True
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, when: float) -> None:
        # One timer per link rather than one per message: loop timers with equal deadlines are
        # not guaranteed to fire in the order they were set, and order matters on a stream.
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._flush)

    def _flush(self) -> None:
        self._timer = None
        # The loop may fire a timer up to its clock resolution early; count that as arrived.
        horizon = max(self._loop.time(), self._timer_at)
        pending = self._pending
        while pending and pending[0][0] <= horizon:
            self._deliver(pending.popleft()[1])
        if pending:
            self._schedule(pending[0][0])


async def drain(queue: asyncio.Queue[Message]) -> AsyncIterator[bytes]:
    """Yield the payloads arriving on ``queue`` until the sender's ``END`` (or a ``Failure``, raised)."""
    while True:
        message = await queue.get()
        if isinstance(message, bytes):
            yield message
        elif isinstance(message, Failure):
            raise message.error()
        else:
            return


def describe(error: BaseException) -> str:
    """How a remote handler's exception is reported to the caller: type and message, no traceback."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
