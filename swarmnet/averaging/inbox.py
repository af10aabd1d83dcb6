"""Data messages of one group, stored as they arrive and grouped into complete contributions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from swarmnet.averaging.config import DeadlineConfig
from swarmnet.averaging.deadlines import Arrivals
from swarmnet.averaging.messages import DataHeader
from swarmnet.errors import ProtocolError

__all__ = ["Inbox", "Message"]

Slot = tuple[str, int]  # (kind, pass)


@dataclass
class Message:
    """One sender's complete message of a kind and pass: its header fields and payload chunks."""

    chunks: int
    weight: float
    contributors: tuple[int, ...]
    payloads: dict[int, memoryview] = field(default_factory=dict)
    tags: dict[int, tuple[int, ...]] = field(default_factory=dict)  # results: contributors of each chunk

    @property
    def complete(self) -> bool:
        """Whether every chunk has arrived."""
        return len(self.payloads) == self.chunks

    def ordered(self) -> list[memoryview]:
        """The payload chunks in order (only when complete)."""
        return [self.payloads[i] for i in range(self.chunks)]


class Inbox:
    """What a member received in one group, by (kind, pass) and sender index.

    A sender can only fill its own slots (the transport authenticated it); header fields must
    agree across a message's chunks; a chunk count above ``max_chunks`` is refused, which bounds
    what a misbehaving member can make us hold to about one copy of the vector per message kind.
    """

    def __init__(self, deadlines: DeadlineConfig, max_chunks: int) -> None:
        self._deadlines = deadlines
        self._max_chunks = max_chunks
        self._messages: dict[Slot, dict[int, Message]] = {}
        self._arrivals: dict[Slot, Arrivals] = {}
        self._completions: dict[Slot, asyncio.Queue[int | None]] = {}
        self._changed: dict[Slot, asyncio.Event] = {}
        self.last_heard: dict[int, float] = {}  # sender -> loop time of its latest chunk
        self.bytes_received = 0

    def arrivals(self, kind: str, pass_no: int) -> Arrivals:
        """The arrival tracker of a slot (created on first use; tallies have no straggler cutoff)."""
        slot = (kind, pass_no)
        if slot not in self._arrivals:
            factor = float("inf") if kind == "tally" else self._deadlines.straggler_factor
            self._arrivals[slot] = Arrivals(factor=factor, grace=self._deadlines.straggler_grace)
        return self._arrivals[slot]

    def completions(self, kind: str, pass_no: int) -> asyncio.Queue[int | None]:
        """Senders whose message of a slot is complete, in order of completion (from before any wait, too)."""
        return self._completions.setdefault((kind, pass_no), asyncio.Queue())

    def changed(self, kind: str, pass_no: int) -> asyncio.Event:
        """Set whenever a chunk of the slot arrives (the waiter clears it)."""
        return self._changed.setdefault((kind, pass_no), asyncio.Event())

    def chunk(self, kind: str, pass_no: int, sender: int, index: int) -> tuple[float, memoryview] | None:
        """(weight, payload) of one chunk of ``sender``'s message in a slot, if it has arrived."""
        message = self._messages.get((kind, pass_no), {}).get(sender)
        if message is None or index not in message.payloads:
            return None
        return message.weight, message.payloads[index]

    def declared_chunks(self, kind: str, pass_no: int, sender: int) -> int | None:
        """How many chunks ``sender``'s message of a slot says it has (once its first chunk is in)."""
        message = self._messages.get((kind, pass_no), {}).get(sender)
        return None if message is None else message.chunks

    def put(self, sender: int, header: DataHeader, payload: memoryview) -> None:
        """Store one chunk; ``ProtocolError`` if it contradicts what the sender sent before."""
        if header.chunks > self._max_chunks or header.chunk >= header.chunks:
            raise ProtocolError(f"chunk {header.chunk} of {header.chunks} (at most {self._max_chunks} allowed)")
        self.last_heard[sender] = asyncio.get_running_loop().time()
        slot = (header.kind, header.pass_no)
        messages = self._messages.setdefault(slot, {})
        message = messages.get(sender)
        # A result's chunks are reduced one by one as their parts arrive, each over whoever had sent it.
        contributors = () if header.kind == "result" else header.contributors
        if message is None:
            message = messages[sender] = Message(header.chunks, header.weight, contributors)
        elif (message.chunks, message.weight, message.contributors) != (header.chunks, header.weight, contributors):
            raise ProtocolError(f"{header.kind} chunk {header.chunk} disagrees with the sender's earlier chunks")
        if header.chunk in message.payloads:
            if len(message.payloads[header.chunk]) != len(payload):
                raise ProtocolError(f"{header.kind} chunk {header.chunk} differs from the copy received before")
            return  # a resend after a broken stream: we have it already
        message.payloads[header.chunk] = payload
        message.tags[header.chunk] = header.contributors
        self.bytes_received += len(payload)
        self.changed(header.kind, header.pass_no).set()
        if len(message.payloads) == message.chunks:
            self.arrivals(header.kind, header.pass_no).arrive(sender)
            self.completions(header.kind, header.pass_no).put_nowait(sender)

    def get(self, kind: str, pass_no: int, sender: int) -> Message | None:
        """The complete message of ``sender`` in a slot, or ``None``."""
        message = self._messages.get((kind, pass_no), {}).get(sender)
        return message if message is not None and message.complete else None

    def drop(self, kind: str, pass_no: int) -> None:
        """Forget a slot's payloads once they are used (they can be as large as the vector)."""
        self._messages.pop((kind, pass_no), None)

    def fail(self, sender: int) -> None:
        """Stop waiting for ``sender`` in every slot, present and future."""
        for arrivals in self._arrivals.values():
            arrivals.fail(sender)
