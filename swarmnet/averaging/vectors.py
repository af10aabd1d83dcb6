"""The flat vector a round averages: chunking, encoding with error feedback, validated decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from swarmnet.buffers import zeros
from swarmnet.compression import Codec, decode
from swarmnet.compression.base import NON_FINITE, all_finite
from swarmnet.errors import CodecError

__all__ = ["Feedback", "chunk_bounds", "decode_chunk", "encode_chunk", "flatten", "unflatten"]

Range = tuple[int, int]


@dataclass
class Feedback:
    """Error-feedback residuals of one tensor schema: the sender's and the reducer's (1-bit Adam style)."""

    sent: torch.Tensor  # what this peer's contributions lost to compression, to be sent next time
    reduced: torch.Tensor  # what the aggregates this peer reduced lost, to be sent with the next ones

    @classmethod
    def zeros(cls, numel: int) -> Feedback:
        """Fresh residuals for a vector of ``numel`` elements."""
        return cls(zeros(numel), zeros(numel))


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One float32 CPU vector holding every tensor's values.

    A copy, except for a single contiguous float32 CPU tensor, which is used as it is (the round
    then averages it in place and saves two passes over it).
    """
    only = tensors[0] if len(tensors) == 1 else None
    if only is not None and only.dtype == torch.float32 and only.device.type == "cpu" and only.is_contiguous():
        return only.detach().view(-1)
    parts = [t.detach().reshape(-1).to(device="cpu", dtype=torch.float32) for t in tensors]
    return torch.cat(parts) if parts else torch.zeros(0)


def unflatten(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    """Write ``flat`` back into ``tensors`` in place, casting to each one's dtype and device."""
    offset = 0
    with torch.no_grad():
        for tensor in tensors:
            size = tensor.numel()
            tensor.copy_(flat[offset : offset + size].view(tensor.shape))
            offset += size


def chunk_bounds(ranges: Sequence[Range], chunk_elements: int) -> list[Range]:
    """Split each range into consecutive chunks of at most ``chunk_elements``."""
    chunks: list[Range] = []
    for lo, hi in ranges:
        chunks.extend((a, min(a + chunk_elements, hi)) for a in range(lo, hi, chunk_elements))
    return chunks


def encode_chunk(codec: Codec, values: torch.Tensor, residual: torch.Tensor | None, *, fresh: bool) -> bytes:
    """Encode ``values`` (plus ``residual``, unless ``fresh``) and leave the compression error in ``residual``.

    A sender's contribution already includes its old residual, so it encodes with ``fresh=True``;
    a reducer adds the residual its earlier aggregates left behind (``fresh=False``).
    """
    if residual is None:
        return codec.encode(values)
    if fresh:
        residual.zero_()
    return codec.encode_with_feedback(values, residual)


def decode_chunk(payload: memoryview | bytes, numel: int) -> torch.Tensor:
    """Decode any codec's payload into a float32 vector of exactly ``numel`` finite values (read-only).

    Raises ``CodecError`` for a malformed payload, a wrong element count, or NaN/Inf values: a
    contribution that would poison the average is refused, never averaged.
    """
    tensor = decode(payload, max_elements=numel)
    if tensor.numel() != numel:
        raise CodecError(f"payload holds {tensor.numel()} elements, expected {numel}")
    tensor = tensor.reshape(-1).to(torch.float32)
    if not all_finite(tensor):
        raise CodecError(NON_FINITE)
    return tensor
