"""Shared-scale encoding: low-bit integers that every client of a round scales alike, so they add exactly.

The coordinator publishes one scale per block of ``block`` coordinates. A client divides each
value it sends by its block's scale and rounds to an integer ``q`` in ``[-levels, levels]``; it
packs ``q + levels`` into slots just wide enough for the round's ``participants`` (``packing``).
The unmasked field sum then holds, per coordinate, the exact sum of the clients' integers, and
``scale * (sum - survivors * levels)`` is exactly the sum of what the clients sent: no client's
own scale is needed, which is what stops a per-client scale (sign compression's) from working
under masks. With one level, each value is ternary (-1, 0, +1 times the scale) and costs
``bit_length(2 * participants)`` bits on the wire: 5 bits for 8 clients, 6 for 16.

Whatever rounding drops stays in the client's error-feedback residual, so it is delayed, not lost.

Scales follow the updates without revealing any one of them: after the values, each client adds
one fixed-point word per block, the mean magnitude of its values in that block divided by the
block's scale. The coordinator learns only the sum over the survivors, derives the mean
magnitude, and publishes ``2 * mean / (levels + 1)`` as the next round's scale (the mean itself
for one level, as in sign compression with a scale). A round's scale can change at most
``MAX_SCALE_STEP`` times, so an empty block cannot drive it to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.secagg.field import U32Array
from swarmnet.federated.secagg.packing import pack, packed_words, slot_bits, unpack

__all__ = ["MAX_LEVELS", "MAX_PARTICIPANTS", "MAX_SCALE_STEP", "ScaledEncoding", "ScaledSum", "default_scales"]

MAX_LEVELS = 127
MAX_PARTICIPANTS = 1024  # so every client's magnitude statistic keeps a range of 64 times the scale
MAX_SCALE_STEP = 1024.0  # the most one round's statistics move a block's scale, either way
STAT_ONE = 1 << 16  # fixed point of the magnitude statistics: 1.0 (the magnitude equals the scale)


@dataclass(frozen=True)
class ScaledSum:
    """What the coordinator decodes from an unmasked shared-scale total."""

    values: torch.Tensor  # float32, the sum of the survivors' sent values, one per coordinate sent
    next_scales: torch.Tensor  # float32, one per block: the scales the next round should publish


@dataclass(frozen=True, kw_only=True)
class ScaledEncoding:
    """One round's shared-scale settings; every client and the coordinator of the round agree on them."""

    levels: int  # each value is an integer in [-levels, levels] times its block's scale
    block: int  # coordinates per scale
    scales: torch.Tensor = field(compare=False)  # float32, one per block of the whole vector
    participants: int  # most clients whose values are summed: the slots are sized for them

    def validate(self, length: int) -> None:
        """Raise ``ConfigError`` unless the settings encode a vector of ``length`` coordinates."""
        if not 1 <= self.levels <= MAX_LEVELS:
            raise ConfigError(f"shared-scale levels must be in [1, {MAX_LEVELS}], got {self.levels}")
        if not 1 <= self.block <= 1 << 24:
            raise ConfigError(f"shared-scale block must be in [1, 2^24], got {self.block}")
        if not 1 <= self.participants <= MAX_PARTICIPANTS:
            raise ConfigError(f"shared-scale participants must be in [1, {MAX_PARTICIPANTS}], got {self.participants}")
        blocks = -(-length // self.block)
        if self.scales.dtype != torch.float32 or self.scales.shape != (blocks,):
            raise ConfigError(f"{length} coordinates in blocks of {self.block} need {blocks} float32 scales")
        if not bool(torch.isfinite(self.scales).all()) or not bool((self.scales > 0).all()):
            raise ConfigError("shared scales must be finite and positive")

    @property
    def slot_bits(self) -> int:
        """Bits per value: enough for the sum of ``participants`` values in ``[0, 2 * levels]``."""
        return slot_bits(2 * self.levels * self.participants)

    @property
    def _statistic_cap(self) -> int:
        """The largest magnitude word one client sends: ``participants`` of them never wrap the field."""
        return (2**32 - 1) // self.participants

    def words(self, count: int) -> int:
        """Field words of one client's vector: ``count`` packed values, then a statistic per block."""
        return packed_words(count, self.slot_bits) + self.scales.numel()

    def encode(
        self, values: torch.Tensor, positions: torch.Tensor, whole: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[U32Array, torch.Tensor]:
        """Field words of ``values`` (the coordinates ``positions`` of ``whole``) and what they decode to.

        Rounding is stochastic with ``generator`` (unbiased), or to nearest without one; either way
        the caller's error feedback keeps the difference. ``whole`` (every coordinate, weighted
        like ``values``) gives the per-block magnitude statistics.

        Raises:
            ValueError: NaN or infinite values.
        """
        flat, whole = values.detach().reshape(-1).float(), whole.detach().reshape(-1).float()
        if not (bool(torch.isfinite(flat).all()) and bool(torch.isfinite(whole).all())):
            raise ValueError("cannot encode NaN or infinite values")
        scale = self.scales[positions.reshape(-1) // self.block]
        ratio = (flat / scale).double()
        if generator is None:
            rounded = torch.round(ratio)
        else:
            floor = torch.floor(ratio)
            rounded = floor + (torch.rand(ratio.shape, generator=generator, dtype=torch.float64) < ratio - floor)
        q = rounded.clamp(-self.levels, self.levels).to(torch.int64)
        slots = pack(q.numpy() + self.levels, self.slot_bits)
        words = np.concatenate([slots, self._statistics(whole)])
        return words, q.float() * scale

    def decode(self, total: U32Array, positions: torch.Tensor, survivors: int) -> ScaledSum:
        """The sum of ``survivors`` clients' values from their unmasked field sum, and the next scales.

        Raises:
            ProtocolError: a sum no ``survivors`` honest clients could produce (values out of range).
            ValueError: ``total`` does not have this encoding's length.
        """
        count = positions.numel()
        if not 1 <= survivors <= self.participants:
            raise ValueError(f"survivors must be in [1, {self.participants}], got {survivors}")
        if total.dtype != np.uint32 or total.shape != (self.words(count),):
            raise ValueError(f"a shared-scale total of {count} values has {self.words(count)} uint32 words")
        value_words = packed_words(count, self.slot_bits)
        slots, statistics = unpack(total[:value_words], self.slot_bits, count), total[value_words:]
        # Honest inputs cannot add up to more than this; a larger sum means a client sent values outside
        # the round's range (which could also have carried into the next slot): refuse the round.
        if count and int(slots.max()) > 2 * self.levels * survivors:
            raise ProtocolError(f"the unmasked sum exceeds what {survivors} clients' values in range can add up to")
        if int(statistics.max()) > survivors * self._statistic_cap:
            raise ProtocolError(f"the unmasked magnitudes exceed what {survivors} clients can report")
        values = (
            torch.from_numpy(slots - survivors * self.levels).float()
            * self.scales[positions.reshape(-1) // self.block]
        )
        magnitude = torch.from_numpy(statistics.astype(np.float64) / (STAT_ONE * survivors))
        step = (2.0 * magnitude / (self.levels + 1)).clamp(1 / MAX_SCALE_STEP, MAX_SCALE_STEP)
        return ScaledSum(values, (self.scales.double() * step).float())

    def _statistics(self, whole: torch.Tensor) -> U32Array:
        """Per block, ``mean |whole| / scale`` in fixed point, capped so ``participants`` of them fit a word."""
        blocks = self.scales.numel()
        padded = torch.zeros(blocks * self.block, dtype=torch.float64)
        padded[: whole.numel()] = whole.abs().double()
        sizes = torch.full((blocks,), float(self.block), dtype=torch.float64)
        sizes[-1] = whole.numel() - (blocks - 1) * self.block
        ratio = padded.view(blocks, self.block).sum(dim=1) / sizes / self.scales.double()
        fixed = torch.round(ratio * STAT_ONE).clamp(0, self._statistic_cap)
        return fixed.numpy().astype(np.uint32)


def default_scales(length: int, block: int, scale: float) -> torch.Tensor:
    """``scale`` for every block of a ``length``-coordinate vector (the first round's scales)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"a shared scale must be finite and positive, got {scale}")
    return torch.full((-(-length // block),), float(scale), dtype=torch.float32)
