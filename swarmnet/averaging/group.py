"""A formed averaging group, the tensor schema peers must share, and bandwidth-proportional partitions."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from swarmnet.averaging.vectors import Range

__all__ = ["MAX_SHARE_OF_MEDIAN", "Group", "partition", "schema_id", "split_spans"]

_ALIGN = 256  # part boundaries on multiples of this: codecs work in blocks, and sizes stay tidy
# No member reduces more than this many times the (lower) median member's share. A protocol constant, not a
# setting: every member must cut the vector alike.
MAX_SHARE_OF_MEDIAN = 2.0
_LAYOUT = 2  # raised whenever ``partition`` changes: 2 = shares capped at MAX_SHARE_OF_MEDIAN


@dataclass(frozen=True)
class Group:
    """Peers that average one round together; every member derives the same parts from it."""

    group_id: str
    run: str
    round_id: int
    members: tuple[str, ...]  # in the leader's order, which fixes member indices
    bandwidths: tuple[float, ...]  # Mbit/s per member, as announced: ``partition`` caps them into shares

    def index(self, peer_id: str) -> int:
        """The member index of ``peer_id`` (``ValueError`` if it is not a member)."""
        return self.members.index(peer_id)


def schema_id(tensors: Sequence[torch.Tensor], codec: str, rule: str) -> str:
    """A short hash of what must match for peers to average together: shapes, dtypes, codec, rule, and how
    members cut the vector (``_LAYOUT``: peers that would cut it differently must not meet)."""
    description = {
        "tensors": [[str(t.dtype), list(t.shape)] for t in tensors], "codec": codec, "rule": rule, "layout": _LAYOUT,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


def partition(numel: int, bandwidths: Sequence[float]) -> list[tuple[int, int]]:
    """Split ``[0, numel)`` into contiguous ranges, one per member, sized in proportion to bandwidth.

    Members announcing no bandwidth get an empty range (they send and receive but reduce nothing);
    if all announce none, the split is even. Boundaries are aligned to 256 elements.

    An announced bandwidth is its member's own claim (and the leader's, which relays it). Each is capped
    at ``MAX_SHARE_OF_MEDIAN`` times the lower median of the positive ones, a figure a minority cannot
    raise: a member claiming 1e6 Mbit/s among peers of 100 reduces twice their share, not the whole
    vector (which would make it the one reducer whose result counts, and everyone's bottleneck).
    """
    if not bandwidths:
        return []
    shares = [max(0.0, b) if math.isfinite(b) else 0.0 for b in bandwidths]
    positive = sorted(b for b in shares if b > 0)
    if positive:
        cap = MAX_SHARE_OF_MEDIAN * positive[(len(positive) - 1) // 2]
        shares = [min(b, cap) for b in shares]
    total = sum(shares)
    if total <= 0:
        shares, total = [1.0] * len(bandwidths), float(len(bandwidths))
    bounds, cumulative = [0], 0.0
    for share in shares[:-1]:
        cumulative += share
        cut = round(numel * cumulative / total / _ALIGN) * _ALIGN
        bounds.append(min(max(cut, bounds[-1]), numel))
    bounds.append(numel)
    return list(itertools.pairwise(bounds))


def split_spans(spans: list[Range], reducers: list[int]) -> dict[int, list[Range]]:
    """Split every span evenly among ``reducers``."""
    assignment: dict[int, list[Range]] = {r: [] for r in reducers}
    for lo, hi in spans:
        cuts = [lo + (hi - lo) * k // len(reducers) for k in range(len(reducers) + 1)]
        for reducer, a, b in zip(reducers, cuts[:-1], cuts[1:], strict=True):
            if b > a:
                assignment[reducer].append((a, b))
    return {r: s for r, s in assignment.items() if s}
