"""Fixed-point encoding of float updates into Z_{2^32}, so that masked sums are exact.

Masks only cancel in modular integer arithmetic, so each client maps its update to integers
mod 2^32 before masking, and the coordinator maps the unmasked sum back to floats. A value in
``[-clip, clip]`` becomes an integer in ``[-levels, levels]``; ``levels`` is chosen so that the sum
of ``max_clients`` such integers still fits in an int32, so the two's-complement sum never wraps
and ``dequantize`` reads it back exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from swarmnet.errors import ConfigError

__all__ = ["FieldConfig", "U32Array", "add_mod", "dequantize", "quantize", "sub_mod"]

U32Array = npt.NDArray[np.uint32]

_INT32_MAX = 2**31 - 1
_LOW_32_BITS = 0xFFFFFFFF


@dataclass(frozen=True, kw_only=True)
class FieldConfig:
    """How floats map to Z_{2^32}; every client and the coordinator of a round must agree on it."""

    clip: float = 1.0  # values are clipped to [-clip, clip]; +clip encodes as ``levels``
    max_clients: int = 64  # sums of up to this many clients' values fit in int32 without wrap-around

    def validate(self) -> None:
        """Raise ``ConfigError`` if the settings cannot encode anything."""
        if not (isinstance(self.clip, int | float) and math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"FieldConfig.clip must be a positive finite number, got {self.clip!r}")
        if not (isinstance(self.max_clients, int) and 1 <= self.max_clients <= _INT32_MAX):
            raise ConfigError(f"FieldConfig.max_clients must be an integer in [1, 2^31 - 1], got {self.max_clients!r}")

    @property
    def levels(self) -> int:
        """The integer that represents ``+clip`` (one quantization step is ``clip / levels``)."""
        return _INT32_MAX // self.max_clients


def quantize(x: torch.Tensor, config: FieldConfig, generator: torch.Generator | None = None) -> U32Array:
    """Encode ``x`` (any shape) as uint32 field elements with unbiased stochastic rounding.

    Stochastic rounding makes the expected encoded value exactly ``x / clip * levels``, so the
    rounding error averages out over clients instead of biasing the aggregate.

    Args:
        x: the values; clipped to ``[-clip, clip]`` first.
        config: the round's field settings.
        generator: a CPU torch generator for the rounding noise (for reproducible tests).

    Raises:
        ValueError: ``x`` holds NaN or infinite values (clipping would hide a diverged client).
    """
    config.validate()
    # The arithmetic runs in numpy: torch's intra-op thread pool costs more than it saves on a
    # few elementwise passes, and stalls badly on a busy CPU.
    values = x.detach().cpu()
    if values.dtype == torch.bfloat16:
        values = values.float()  # numpy has no bfloat16; float32 holds every bfloat16 exactly
    # float64: levels is ~2^25, beyond float32's 24-bit mantissa.
    ratio = values.numpy().astype(np.float64) / config.clip
    if not np.isfinite(ratio).all():
        raise ValueError("cannot quantize a tensor with NaN or infinite values")
    # Clamp the ratio to [-1, 1] before scaling: fl(r * levels) <= levels for r <= 1, so the
    # rounded value never exceeds levels and the int32 budget of FieldConfig holds exactly.
    scaled = np.clip(ratio, -1.0, 1.0) * config.levels
    floor = np.floor(scaled)
    noise = torch.rand(scaled.shape, generator=generator, dtype=torch.float64).numpy()
    rounded = (floor + (noise < scaled - floor)).astype(np.int64)
    # Two's complement mod 2^32: mask the int64 instead of relying on a C cast of negatives.
    return (rounded & _LOW_32_BITS).astype(np.uint32)


def dequantize(total: U32Array, config: FieldConfig) -> torch.Tensor:
    """Decode field elements (typically an unmasked sum) back to float32 values of the same shape."""
    config.validate()
    if total.dtype != np.uint32:
        raise ValueError(f"expected a uint32 array, got {total.dtype}")
    signed = total.view(np.int32).astype(np.float64)
    return torch.from_numpy((signed / config.levels * config.clip).astype(np.float32))


def add_mod(a: U32Array, b: U32Array) -> U32Array:
    """``a + b`` mod 2^32 (numpy's uint32 arithmetic wraps, which is exactly the field)."""
    _check_pair(a, b)
    return np.add(a, b, dtype=np.uint32)


def sub_mod(a: U32Array, b: U32Array) -> U32Array:
    """``a - b`` mod 2^32."""
    _check_pair(a, b)
    return np.subtract(a, b, dtype=np.uint32)


def _check_pair(a: U32Array, b: U32Array) -> None:
    # Mixed dtypes would silently promote to int64 and break the modular arithmetic.
    if a.dtype != np.uint32 or b.dtype != np.uint32:
        raise ValueError(f"expected uint32 arrays, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
