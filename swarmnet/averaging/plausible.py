"""Whether a reducer's result is plausible under a robust rule, as far as a receiver can tell.

A receiver sees, of another reducer's range, only its own contribution and the result. Under a robust
rule an honest result lies among the inputs (per coordinate, between the honest ones), so its distance
from the receiver's own values is about as large, relative to those values, in every range: the
receiver's ratio ``q = ||result - own|| / ||own||`` is a measure of how much the group disagrees, and it
does not depend on a range's scale, on the codec (every range is encoded alike) or on how far this
receiver's own update is from the others (that moves every range's ratio together). A range whose
ratio exceeds ``tolerance`` times the lower median of the round's ratios (this receiver's own range
included, which it reduced itself) is a lie or a fault: its reducer is distrusted and the receiver
keeps its own values there. A minority of lying reducers cannot move the lower median.

A receiver whose own values are themselves the outlier in some range (an update that diverged there)
looks at an honest result there as a liar would: it keeps its own values in that range and avoids that
reducer for a while, which costs it averaging there, never correctness elsewhere.

What this cannot catch: a lie within the bound. A reducer can still move its range by up to about
``tolerance`` times as far from each receiver's values as honest results are (measured in
scripts/bench/averaging_byzantine.py), and it can send different receivers different results. Under the
plain mean nothing is checked beyond finiteness: any one sender can already move the mean anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from swarmnet.averaging.vectors import Range
from swarmnet.buffers import empty

__all__ = ["ResultCheck"]

_FLOOR = 1e-6  # a ratio below this is rounding, even when every honest ratio is exactly 0
_BLOCK = 1 << 20  # elements per step of a measurement


class ResultCheck:
    """Measures each result written into ``flat`` against the values it replaced; refuses outliers."""

    def __init__(self, flat: torch.Tensor, tolerance: float) -> None:
        self._flat, self._tolerance = flat, tolerance
        self._own = empty(flat.numel())  # our values wherever a result was written (no fill: untouched pages)
        self._pending: dict[int, tuple[list[Range], float, float]] = {}  # reducer -> (spans, dist^2, own^2)
        self._kept: list[float] = []  # ratios of the ranges accepted in earlier passes

    def keep(self, a: int, b: int) -> None:
        """Save our values in ``[a, b)`` before a result overwrites them."""
        self._own[a:b].copy_(self._flat[a:b])

    def measure(self, reducer: int, spans: list[Range]) -> None:
        """Note how far the result just written into ``spans`` is from the values it replaced."""
        distance = own = 0.0
        for lo, hi in spans:
            for a in range(lo, hi, _BLOCK):  # in blocks: the temporary stays small whatever the range
                b = min(a + _BLOCK, hi)
                # float64 sums of squares (a difference that overflows float32 is inf, and so is its ratio).
                own += float(torch.linalg.vector_norm(self._own[a:b], dtype=torch.float64)) ** 2
                diff = self._flat[a:b] - self._own[a:b]
                distance += float(torch.linalg.vector_norm(diff, dtype=torch.float64)) ** 2
        self._pending[reducer] = (spans, distance, own)

    def refuse_outliers(self, me: int) -> dict[int, tuple[str, list[Range]]]:
        """Judge every result measured since the last call: restore our values where a reducer's result is
        implausible and return those reducers (never ``me``, whose range we reduced), with the reason and
        the spans restored."""
        ratios = {r: _ratio(distance, own) for r, (_, distance, own) in self._pending.items()}
        reference = _lower_median([*self._kept, *ratios.values()])
        bound = self._tolerance * max(reference, _FLOOR)
        refused = {}
        for reducer, q in ratios.items():
            spans = self._pending[reducer][0]
            if reducer != me and not q <= bound:  # NaN included
                reason = (
                    f"its result is {q:.3g}x our values' norm away from them, over {self._tolerance:g}x "
                    f"the {reference:.3g}x of the round's other ranges"
                )
                refused[reducer] = (reason, spans)
                for a, b in spans:
                    self._flat[a:b].copy_(self._own[a:b])
            else:
                self._kept.append(q)
        self._pending.clear()
        return refused


def _ratio(distance: float, own: float) -> float:
    if own > 0:
        return math.sqrt(distance / own)
    return 0.0 if distance == 0 else math.inf


def _lower_median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2] if ordered else math.inf
