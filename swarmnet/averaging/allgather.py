"""Sparse all-gather mode of a round (top-k codecs, when cheaper than reduce-scatter): every member sends
its whole sparse vector to all others, then the tally, then every member aggregates everything itself
(exact sum of the sparse vectors; no reducer-side compression).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import torch

from swarmnet.averaging.background import together
from swarmnet.averaging.config import SparseMode
from swarmnet.averaging.contributions import Contributions
from swarmnet.averaging.exchange import RoundExchange
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.link import GroupLink
from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.vectors import Range
from swarmnet.clock import off_loop
from swarmnet.compression import Codec

__all__ = ["gather_pass", "prefers_allgather"]

_HEADER_OVERHEAD = 400  # bytes of framing per message, for the sparse mode choice


def prefers_allgather(codec: Codec, sparse_mode: SparseMode, members: int, ratio: float, numel: int) -> bool:
    """Whether a group of ``members`` averages ``numel`` elements in sparse all-gather mode.

    ``sparse_mode`` is the configured choice ("reduce", "allgather" or automatic); ``ratio`` the codec's
    estimated compression ratio.
    """
    if not type(codec).__name__.startswith("TopK") or sparse_mode == "reduce":
        return False
    if sparse_mode == "allgather":
        return True
    # Per peer, reduce-scatter sends 2(N-1)/N payloads in 2(N-1) messages; all-gather sends
    # N-1 whole payloads in N-1 messages: all-gather wins when payloads are tiny (or N <= 2).
    payload = ratio * 4 * numel
    return payload * (members - 2) / members <= (members - 1) * _HEADER_OVERHEAD


async def gather_pass(
    exchange: RoundExchange,
    link: GroupLink,
    inbox: Inbox,
    contributions: Contributions,
    new_reducer: Callable[[list[Range]], RangeReducer],
    *,
    flat: torch.Tensor,
    chunks: list[Range],
    weight: float,
) -> None:
    """Send our chunks of ``flat`` to everyone, aggregate everyone's and write the result into ``flat``;
    the contributors and phase timings go into ``exchange.report``."""
    me, report = exchange.me, exchange.report
    members = set(range(len(exchange.group.members)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    payloads = await off_loop(lambda: [contributions.encode_part(0, a, b) for a, b in chunks])
    sends = asyncio.ensure_future(together([link.send_all(r, "gather", 0, payloads) for r in exchange.others()]))
    reducer = new_reducer(chunks)
    reducer.add_payloads(me, weight, payloads)  # the exact sparse values the others get
    inbound = (len(members) - 1) * sum(len(p) for p in payloads)
    await exchange.receive("gather", 0, members - {me}, inbound,
                           lambda sender: exchange.accept("gather", 0, sender, reducer))  # fmt: skip
    report.time_phase(0, "all_gather", started)
    started = loop.time()
    tallies = await exchange.tally(0, sorted(reducer.accepted), members, biggest=None)
    await exchange.finish(sends)
    contributors = reducer.accepted & (set(tallies) | {me})
    for tally in tallies.values():
        contributors &= set(tally)
    report.contributors = contributors
    report.time_phase(0, "tally", started)
    for j, (a, b) in enumerate(chunks):
        flat[a:b].copy_(reducer.result(j, contributors))
    inbox.drop("gather", 0)
