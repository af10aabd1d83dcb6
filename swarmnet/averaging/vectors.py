"""The flat vector a round averages: chunking, where its error-feedback residuals live, validated decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from swarmnet.compression import ErrorFeedback, decode
from swarmnet.compression.base import NON_FINITE, all_finite
from swarmnet.errors import CodecError

__all__ = ["SchemaFeedback", "chunk_bounds", "decode_chunk", "feedback_keys", "flatten", "unflatten"]

Range = tuple[int, int]


@dataclass(frozen=True)
class SchemaFeedback:
    """Where one tensor schema's error-feedback residuals live in an ``ErrorFeedback``: one vector the sender
    keeps for what its contributions lost, one the reducer keeps for what its aggregates lost (1-bit Adam
    style), each of ``numel`` elements under a key named after the schema."""

    store: ErrorFeedback
    sent: str
    reduced: str
    numel: int

    @classmethod
    def of(cls, store: ErrorFeedback, schema: str, numel: int) -> SchemaFeedback:
        """The residuals of ``schema`` in ``store`` (created at zero on first use)."""
        sent, reduced = feedback_keys(schema)
        return cls(store, sent, reduced, numel)


def feedback_keys(schema: str) -> tuple[str, str]:
    """The ``ErrorFeedback`` keys of ``schema``'s sender and reducer residuals."""
    return f"sent/{schema}", f"reduced/{schema}"


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
