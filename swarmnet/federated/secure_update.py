"""How an update enters secure aggregation: subset, weight, clip, quantize into the field.

Masks only cancel where every client masks the same coordinates, so a sparse update cannot
choose its own top-k. Instead the coordinator draws one random subset per round (a seed in the
task, ``density`` of the coordinates), every client sends exactly those coordinates, and what a
client does not send stays in its error-feedback residual for later rounds (random-k with
memory). Values are weighted (``samples / samples_cap``), clipped to ``[-clip, clip]``, and
stochastically rounded to fixed point with ``levels = (2**(bits-1) - 1) // max_clients``, so the
sum of up to ``max_clients`` values never wraps the field ``Z_2^bits``: the unmasked sum is the
exact sum of the quantized values. With ``bits=16`` a client sends 2 bytes per coordinate. The
field arithmetic runs in 32-bit words (masks are uniform mod 2^32, hence mod 2^16 too) and only the
low ``bits`` of each masked word go on the wire.

That is the ``fixed`` encoding. The ``scaled`` one (``secagg.scaled``) sends every coordinate as a
few-bit integer times a scale the coordinator publishes for the round, packed several to a 32-bit
word: all clients share the scales, so the integers add exactly, and the scales follow the
magnitude of the updates round after round. At 7 levels and 8 clients a coordinate costs 8 bits
(4 values of 7 bits per word), where ``fixed`` sends a 10% subset at 16 bits per coordinate.
"""

from __future__ import annotations

import numpy as np
import torch

from swarmnet.errors import ConfigError
from swarmnet.federated.secagg.field import FieldConfig, dequantize, quantize
from swarmnet.federated.secagg.scaled import ScaledEncoding
from swarmnet.proto import federated_pb2 as pb

__all__ = [
    "ENCODINGS",
    "decode_secure",
    "decode_sum",
    "encode_values",
    "field_config",
    "from_wire",
    "indices_from_bytes",
    "indices_to_bytes",
    "informed_subset",
    "scaled_encoding",
    "scales_from_bytes",
    "scales_to_bytes",
    "secure_weight",
    "secure_words",
    "subset",
    "to_wire",
]

ENCODINGS = ("fixed", "scaled")


def secure_weight(samples: int, samples_cap: int) -> float:
    """A client's weight inside secure aggregation: ``samples / samples_cap``, at most 1; 1 when uniform."""
    return 1.0 if samples_cap <= 0 else min(samples, samples_cap) / samples_cap


def subset(length: int, density: float, seed: int) -> torch.Tensor:
    """The round's shared coordinate subset: sorted indices, the same on every client and the coordinator."""
    count = max(1, round(length * density)) if length else 0
    if count >= length:
        return torch.arange(length)
    generator = torch.Generator().manual_seed(seed & ((1 << 63) - 1))
    return torch.randperm(length, generator=generator)[:count].sort().values


def informed_subset(
    length: int, density: float, seed: int, scores: torch.Tensor | None, explore: float = 0.5
) -> torch.Tensor:
    """A subset led by what mattered: the top ``(1 - explore)`` share by ``scores`` (the magnitude of
    each coordinate's aggregate when it was last sent, which the coordinator knows anyway), the rest
    drawn at random from the other coordinates so every one keeps a chance. ``scores=None``: ``subset``."""
    if scores is None or scores.numel() != length:
        return subset(length, density, seed)
    count = max(1, round(length * density)) if length else 0
    if count >= length:
        return torch.arange(length)
    top = torch.topk(scores.abs(), int(count * (1 - explore))).indices
    rest = torch.ones(length, dtype=torch.bool)
    rest[top] = False
    others = rest.nonzero().reshape(-1)
    generator = torch.Generator().manual_seed(seed & ((1 << 63) - 1))
    drawn = others[torch.randperm(others.numel(), generator=generator)[: count - top.numel()]]
    return torch.cat([top, drawn]).sort().values


def indices_to_bytes(indices: torch.Tensor) -> bytes:
    """Sorted indices as little-endian uint32 (how a round's subset travels in its task)."""
    return indices.to(torch.int64).numpy().astype("<u4").tobytes()


def indices_from_bytes(data: bytes, length: int) -> torch.Tensor:
    """Parse and check a task's subset: strictly increasing, inside the adapter; ``ValueError`` otherwise."""
    if len(data) % 4:
        raise ValueError(f"a subset of uint32 indices has a multiple of 4 bytes, got {len(data)}")
    indices = torch.from_numpy(np.frombuffer(data, dtype="<u4").astype(np.int64))
    if indices.numel() == 0 or int(indices[-1]) >= length or bool((indices[1:] <= indices[:-1]).any()):
        raise ValueError(f"subset indices must be strictly increasing and below {length}")
    return indices


def field_config(bits: int, clip: float, max_clients: int) -> FieldConfig:
    """A 32-bit field config whose ``levels`` suit a ``bits``-bit field (sums of ``max_clients`` fit)."""
    # FieldConfig's levels are (2**31 - 1) // max_clients; scaling max_clients by 2**(32 - bits)
    # gives about (2**(bits-1) - 1) // max_clients levels, the headroom a smaller field needs.
    return FieldConfig(clip=clip, max_clients=max_clients << (32 - bits))


def encode_values(values: torch.Tensor, config: FieldConfig, generator: torch.Generator | None = None) -> np.ndarray:
    """Clip and quantize (stochastic rounding) into uint32 two's-complement field words."""
    return quantize(values.to(torch.float32), config, generator)


def to_wire(words: np.ndarray, bits: int) -> bytes:
    """The low ``bits`` of each (masked) word, little-endian."""
    if bits == 16:
        return (words & 0xFFFF).astype("<u2").tobytes()
    return words.astype("<u4").tobytes()


def from_wire(data: bytes, bits: int, count: int) -> np.ndarray:
    """Parse ``count`` words of ``bits`` bits; ``ValueError`` if the size is not exactly that."""
    width = bits // 8
    if len(data) != width * count:
        raise ValueError(
            f"a secure update of {count} values of {bits} bits has {width * count} bytes, got {len(data)}"
        )
    dtype = "<u2" if bits == 16 else "<u4"
    return np.frombuffer(data, dtype=dtype).astype(np.uint32)


def decode_sum(total: np.ndarray, config: FieldConfig, bits: int) -> torch.Tensor:
    """The float sum behind an unmasked field sum (the low ``bits`` hold it, two's complement)."""
    if bits == 16:
        total = (total & 0xFFFF).astype(np.uint16).view(np.int16).astype(np.int32).view(np.uint32)
    return dequantize(total, config)


def scales_to_bytes(scales: torch.Tensor) -> bytes:
    """Shared scales as little-endian float32 (how they travel in the round's config)."""
    return scales.detach().to(torch.float32).numpy().astype("<f4").tobytes()


def scales_from_bytes(data: bytes) -> torch.Tensor:
    """Parse a round's shared scales; ``ValueError`` unless whole float32 values."""
    if not data or len(data) % 4:
        raise ValueError(f"shared scales are a non-empty multiple of 4 bytes, got {len(data)}")
    return torch.from_numpy(np.frombuffer(data, dtype="<f4").astype(np.float32))


def scaled_encoding(config: pb.RoundConfig, length: int) -> ScaledEncoding:
    """The round's shared-scale settings for an adapter of ``length`` values; ``ValueError`` if unusable."""
    encoding = ScaledEncoding(
        levels=config.secagg_levels,
        block=config.secagg_block,
        scales=scales_from_bytes(config.secagg_scales),
        participants=config.participants,
    )
    try:
        encoding.validate(length)
    except ConfigError as error:
        raise ValueError(str(error)) from error
    return encoding


def secure_words(config: pb.RoundConfig, length: int, count: int) -> int:
    """Field words in one masked update of ``count`` coordinates (of ``length``) in this round's encoding."""
    if config.secagg_encoding == "scaled":
        return scaled_encoding(config, length).words(count)
    return count


def decode_secure(
    total: np.ndarray, config: pb.RoundConfig, indices: torch.Tensor, length: int, survivors: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The float sum of the survivors' values on ``indices``, and the next round's scales (``scaled`` only)."""
    if config.secagg_encoding == "scaled":
        decoded = scaled_encoding(config, length).decode(total, indices, survivors)
        return decoded.values, decoded.next_scales
    field = field_config(config.secagg_bits, config.secagg_clip, config.secagg_max_clients)
    return decode_sum(total, field, config.secagg_bits).to(torch.float32), None
