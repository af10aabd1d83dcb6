"""A reducer's contributions to its chunks: validated on arrival, summed as they come for the mean.

For the plain mean a contribution is added straight from its payload into one float32 sum per
chunk by the codec's fused decode-accumulate kernel, so no decoded copy of any contribution is
built. Each addition is checked by one cheap reduction over the sum: a payload that is malformed,
of the wrong size or codec, or that makes the sum non-finite (NaN or Inf) is refused and its sender
named, and the sums are rebuilt without it (rare, so rebuilding beats keeping every copy around).
Robust rules need every contribution at once: they decode and keep them, then stack per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from swarmnet.averaging.robust import AggregationConfig, aggregate
from swarmnet.averaging.vectors import Range, all_finite, decode_chunk
from swarmnet.compression import Codec
from swarmnet.errors import CodecError

__all__ = ["RangeReducer"]

Payloads = Sequence[bytes | memoryview]


class RangeReducer:
    """Contributions to a list of chunks from several members; ``result`` aggregates one chunk."""

    def __init__(self, codec: Codec, chunks: list[Range], aggregation: AggregationConfig) -> None:
        self._codec, self._chunks, self._aggregation = codec, chunks, aggregation
        self._streaming = aggregation.rule == "mean"
        self._weights: dict[int, float] = {}
        self._payloads: dict[int, Payloads] = {}  # mean: kept to rebuild the sums without someone
        self._values: dict[int, list[torch.Tensor]] = {}  # own contribution; every one for robust rules
        self._sums = [torch.zeros(b - a) for a, b in chunks] if self._streaming else []
        self._summed: set[int] = set()  # members whose contribution the sums hold

    @property
    def accepted(self) -> set[int]:
        """Members whose contribution was accepted."""
        return set(self._weights)

    def add_values(self, member: int, weight: float, values: list[torch.Tensor]) -> None:
        """Add a trusted contribution (this peer's own) as float32 tensors, one per chunk."""
        self._weights[member] = weight
        self._values[member] = values
        if self._streaming:
            for total, value in zip(self._sums, values, strict=True):
                total.add_(value, alpha=weight)
            self._summed.add(member)

    def add_payloads(self, member: int, weight: float, payloads: Payloads) -> str | None:
        """Validate and add a member's payloads (one per chunk); the reason if refused, else ``None``."""
        if len(payloads) != len(self._chunks):
            return f"sent {len(payloads)} chunks, expected {len(self._chunks)}"
        if not self._streaming:
            try:
                self._values[member] = [
                    decode_chunk(p, b - a) for p, (a, b) in zip(payloads, self._chunks, strict=True)
                ]
            except CodecError as e:
                return str(e)
            self._weights[member] = weight
            return None
        for payload, total in zip(payloads, self._sums, strict=True):
            try:
                self._codec.decode_accumulate(payload, total, alpha=weight)
                if not all_finite(total):
                    raise CodecError("payload decodes to non-finite values (NaN or Inf)")
            except CodecError as e:
                self._rebuild()  # part of this member's payloads may already be in the sums
                return str(e)
        self._weights[member], self._payloads[member] = weight, payloads
        self._summed.add(member)
        return None

    def result(self, j: int, contributors: set[int]) -> torch.Tensor:
        """The aggregate of chunk ``j`` over ``contributors`` (a subset of ``accepted``), float32."""
        order = sorted(contributors)
        weights = torch.tensor([self._weights[i] for i in order], dtype=torch.float32)
        if not self._streaming:
            return aggregate(torch.stack([self._values[i][j] for i in order]), weights, self._aggregation)
        if self._summed != contributors:
            self._rebuild(contributors)
        return self._sums[j] / float(weights.sum())

    def _rebuild(self, members: set[int] | None = None) -> None:
        """Recompute the sums over ``members`` (default: every accepted member) from what they sent."""
        members = self.accepted if members is None else members
        self._sums = [torch.zeros(b - a) for a, b in self._chunks]
        for member in sorted(members):
            weight = self._weights[member]
            if member in self._values:
                for total, value in zip(self._sums, self._values[member], strict=True):
                    total.add_(value, alpha=weight)
            else:
                for total, payload in zip(self._sums, self._payloads[member], strict=True):
                    self._codec.decode_accumulate(payload, total, alpha=weight)
        self._summed = set(members)
