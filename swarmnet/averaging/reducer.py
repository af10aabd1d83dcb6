"""A reducer's contributions to its chunks: validated on arrival, summed as they come for the mean.

For the plain mean a contribution is added straight from its payload into one float32 sum per
chunk by the codec's fused decode-accumulate kernel, so no decoded copy of any contribution is
built. Each addition is checked by one cheap reduction over the sum: a payload that is malformed,
of the wrong size or codec, or that makes the sum non-finite (NaN or Inf) is refused and its sender
named, and that chunk's sum is rebuilt without it (rare, so rebuilding beats keeping copies around).
Robust rules need every contribution at once: they decode and keep them, then stack per chunk.
Chunks are independent: a pipelined reducer aggregates chunk ``j`` while later chunks still arrive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from swarmnet.averaging.robust import AggregationConfig, aggregate
from swarmnet.averaging.vectors import Range, decode_chunk
from swarmnet.buffers import zeros
from swarmnet.compression import Codec
from swarmnet.compression.base import NON_FINITE, all_finite
from swarmnet.errors import CodecError
from swarmnet.kernels.threads import single_threaded

__all__ = ["RangeReducer"]

Payload = bytes | memoryview


class RangeReducer:
    """Contributions to a list of chunks from several members; ``result`` aggregates one chunk.

    A contribution whose weight is above ``max_weight`` is refused like a malformed payload: a weight is
    its sender's own claim, and only a bounded one may count in the mean.
    """

    def __init__(
        self, codec: Codec, chunks: list[Range], aggregation: AggregationConfig, *, max_weight: float
    ) -> None:
        self._codec, self._chunks, self._aggregation = codec, chunks, aggregation
        self._max_weight = max_weight
        self._streaming = aggregation.rule == "mean"
        self._weights: dict[int, float] = {}
        self._refused: set[int] = set()
        self._payloads: dict[tuple[int, int], Payload] = {}  # (member, chunk), to rebuild a sum without someone
        self._values: dict[tuple[int, int], torch.Tensor] = {}  # own contribution; every one for robust rules
        self._sums = [zeros(b - a) for a, b in chunks] if self._streaming else []
        self._members: list[set[int]] = [set() for _ in chunks]  # who chunk j holds (in its sum, for the mean)
        self._divided: set[int] = set()  # chunks whose sum was divided in place by their total weight

    @property
    def accepted(self) -> set[int]:
        """Members whose every chunk was accepted so far and who were never refused."""
        return {m for m in self._weights if m not in self._refused and all(m in s for s in self._members)}

    @property
    def refused(self) -> set[int]:
        """Members refused in this pass (each for every chunk)."""
        return set(self._refused)

    def members(self, j: int) -> set[int]:
        """Members whose contribution to chunk ``j`` is held."""
        return set(self._members[j])

    def add_values(self, member: int, weight: float, values: list[torch.Tensor]) -> None:
        """Add a trusted contribution (this peer's own) as float32 tensors, one per chunk."""
        self._weights[member] = weight
        for j, value in enumerate(values):
            self._values[member, j] = value
            if self._streaming:
                with single_threaded():  # no parallel region to stall on a busy CPU (kernels/threads.py)
                    self._sums[j].add_(value, alpha=weight)
            self._members[j].add(member)

    def add_chunk(self, member: int, weight: float, j: int, payload: Payload) -> str | None:
        """Validate and add a member's payload for chunk ``j``; the reason if refused, else ``None``.

        A member refused once is refused for every chunk: its contribution must be all or nothing.
        """
        if member in self._refused:
            return "refused earlier in this pass"
        if not 0 < weight <= self._max_weight:  # the header's parser already refused NaN and Inf
            return self.refuse(member, f"weight {weight} is outside (0, max_weight = {self._max_weight}]")
        if j in self._divided:
            self._rebuild(j, self._members[j])  # its result was taken (divided in place): a sum again
        if self._weights.setdefault(member, weight) != weight:
            return self.refuse(member, f"weight {weight} differs from its earlier {self._weights[member]}")
        a, b = self._chunks[j]
        try:
            if not self._streaming:
                self._values[member, j] = decode_chunk(payload, b - a)
            else:
                self._codec.decode_accumulate(payload, self._sums[j], alpha=weight)
                if not all_finite(self._sums[j]):
                    raise CodecError(NON_FINITE)
                self._payloads[member, j] = payload
        except CodecError as e:
            self._rebuild(j, self._members[j])  # the sum may hold part of the bad payload
            return self.refuse(member, str(e))
        self._members[j].add(member)
        return None

    def add_payloads(self, member: int, weight: float, payloads: Sequence[Payload]) -> str | None:
        """Validate and add a member's payloads for every chunk; the reason if refused, else ``None``."""
        if len(payloads) != len(self._chunks):
            return self.refuse(member, f"sent {len(payloads)} chunks, expected {len(self._chunks)}")
        for j, payload in enumerate(payloads):
            if (reason := self.add_chunk(member, weight, j, payload)) is not None:
                return reason
        return None

    def result(self, j: int, contributors: set[int]) -> torch.Tensor:
        """The aggregate of chunk ``j`` over ``contributors`` (each held for that chunk), float32.

        For the mean this is chunk ``j``'s own buffer, divided in place (no full-size temporary): read
        it before anything else is added to that chunk.
        """
        order = sorted(contributors)
        weights = torch.tensor([self._weights[i] for i in order], dtype=torch.float32)
        if not self._streaming:
            return aggregate(torch.stack([self._values[i, j] for i in order]), weights, self._aggregation)
        if self._members[j] != contributors:
            self._rebuild(j, contributors)
        if j not in self._divided:
            self._divided.add(j)
            with single_threaded():
                self._sums[j].div_(float(weights.sum()))
        return self._sums[j]

    def refuse(self, member: int, reason: str) -> str:
        """Refuse ``member`` for every chunk (its payload, or a fault found outside it); returns ``reason``."""
        self._refused.add(member)
        for j, held in enumerate(self._members):
            if member in held:
                self._rebuild(j, held - {member})
        return reason

    def _rebuild(self, j: int, members: set[int]) -> None:
        """Recompute chunk ``j``'s sum over ``members`` from what they sent."""
        self._members[j] = set(members)
        if not self._streaming:
            return
        self._divided.discard(j)
        total = self._sums[j].zero_()
        for member in sorted(members):
            weight = self._weights[member]
            if (member, j) in self._values:
                with single_threaded():
                    total.add_(self._values[member, j], alpha=weight)
            else:
                self._codec.decode_accumulate(self._payloads[member, j], total, alpha=weight)
