"""Amendments: a reducer re-reduces the chunks of its streamed result that are over the wrong contributors.

A pipelined reducer streams chunk ``j`` of its result as soon as the parts of chunk ``j`` are in, over
whoever had sent them. Only the tally tells who the round's contributors are; a chunk reduced over
someone who later dropped out (a straggler cut off, a sender refused midway, a sender another
reducer never heard from) is over the wrong set. The reducer still holds every contributor's part
of every chunk, so instead of a recovery pass (every sender resending its part) it re-reduces just
those chunks and sends them as an ``amend`` message: one chunk per result chunk, empty where the
streamed chunk stands, each tagged with the contributors. Receivers take the streamed result with
the amendment laid over it; anything that still does not match falls back to recovery.
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmnet.averaging.inbox import Message
from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.vectors import Range, SchemaFeedback
from swarmnet.compression import Codec

__all__ = ["amend", "amended_payloads"]


def amend(
    codec: Codec,
    reducer: RangeReducer,
    chunks: Sequence[Range],
    payloads: list[bytes],
    tags: list[set[int]],
    contributors: set[int],
    feedback: SchemaFeedback | None,
) -> list[bytes]:
    """Re-reduce every chunk whose tag is not ``contributors``; return the amendment's payloads.

    ``payloads`` and ``tags`` (the streamed result) are updated in place to the amended ones.
    ``feedback``: the reducer's error feedback over the whole vector; an amended chunk's residual
    restarts from its new encoding (the old one was spent on a result nobody uses, as on recovery).
    """
    amendment: list[bytes] = []
    for j, (a, _) in enumerate(chunks):
        if tags[j] == contributors:
            amendment.append(b"")
            continue
        result = reducer.result(j, contributors)
        if feedback is None:
            payloads[j] = codec.encode(result)
        else:
            payloads[j] = feedback.store.encode_range(feedback.reduced, feedback.numel, a, result, codec, restart=True)
        tags[j] = set(contributors)
        amendment.append(payloads[j])
    return amendment


def amended_payloads(result: Message, amendment: Message, contributors: set[int]) -> list[memoryview] | None:
    """The streamed result's chunks with ``amendment`` laid over them; ``None`` if the two do not fit
    together or any chunk is still over other contributors than ``contributors``."""
    if amendment.chunks != result.chunks:
        return None
    payloads = []
    for j in range(result.chunks):
        patch = amendment.payloads[j]
        tag = amendment.tags[j] if len(patch) else result.tags[j]
        if set(tag) != contributors:
            return None
        payloads.append(patch if len(patch) else result.payloads[j])
    return payloads
