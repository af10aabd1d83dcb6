"""The ``Codec`` interface: stateless tensor <-> bytes, with a fused error-feedback hook.

A codec instance is configured (block size, ratio, value format) and stateless; everything a
decoder needs travels in the payload (``wire.py``), so any peer decodes any payload without
knowing the sender's settings. Error-feedback residuals live outside, in ``ErrorFeedback``.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch

from swarmnet.buffers import zeros
from swarmnet.compression.wire import CodecId, Header, unpack
from swarmnet.errors import CodecError
from swarmnet.kernels.threads import parallel_map, spans

__all__ = [
    "NON_FINITE",
    "Codec",
    "all_finite",
    "allocate",
    "as_bytes",
    "check_section_sizes",
    "flat_float",
    "section_tensor",
    "unpack_matching",
]


def flat_float(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous 1-D view (or copy) of a floating tensor on the CPU; ``CodecError`` otherwise."""
    if not tensor.is_floating_point():
        raise CodecError(f"codecs take floating tensors, got {tensor.dtype}")
    if tensor.device.type != "cpu":
        raise CodecError(f"CPU codecs take CPU tensors, got one on {tensor.device}")
    return tensor.reshape(-1) if tensor.is_contiguous() else tensor.contiguous().reshape(-1)


NON_FINITE = "payload decodes to non-finite values (NaN or Inf)"


def all_finite(values: torch.Tensor) -> bool:
    """Whether no element is NaN or infinite, in one cheap reduction.

    ``aminmax`` propagates NaN and an infinity shows up as the min or max, so two finite extremes
    prove every element finite, with no boolean tensor as ``isfinite().all()`` builds. For float32 a
    sum is cheaper still: a NaN or an infinity makes it
    non-finite, so a finite sum proves every element finite, and only a non-finite one (which an
    overflow of finite values also gives) is settled by ``aminmax``.
    """
    if not values.numel():
        return True
    if values.device.type == "cpu" and values.is_contiguous():
        # In pieces on the kernels' threads: one torch reduction over it all would meet at a barrier.
        flat = values.view(-1)
        return all(parallel_map(lambda span: _all_finite(flat[span[0] : span[1]]), spans(flat.numel())))
    return _all_finite(values)


def _all_finite(values: torch.Tensor) -> bool:
    if values.dtype == torch.float32 and math.isfinite(float(values.sum())):
        return True
    low, high = torch.aminmax(values)
    return math.isfinite(float(low)) and math.isfinite(float(high))


def as_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy (2-byte floats go through int16: numpy has no bf16)."""
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.view(torch.int16)
    return tensor.numpy().data.cast("B")


def section_tensor(section: memoryview, dtype: torch.dtype) -> torch.Tensor:
    """A read-only, zero-copy 1-D tensor over a payload section; callers must never write to it."""
    if not len(section):
        return torch.empty(0, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "buffer is not writable": we only read it
        return torch.frombuffer(section, dtype=dtype)


def allocate(numel: int, dtype: torch.dtype, *, zero: bool = False) -> torch.Tensor:
    """A fresh flat CPU tensor for decoded values: every tensor of a payload's size that a decode makes comes
    from here, after ``unpack`` has held ``numel`` to the caller's bound (other temporaries are the size of
    the payload's own sections, or of a target the caller allocated). Memory the machine does not have is a
    ``CodecError`` (the payload is refused), never a ``RuntimeError`` or ``MemoryError`` in the caller."""
    try:
        if zero and dtype == torch.float32:
            return zeros(numel)  # numpy's calloc: cheaper than torch.zeros for a fresh buffer
        return torch.zeros(numel, dtype=dtype) if zero else torch.empty(numel, dtype=dtype)
    except (MemoryError, RuntimeError) as error:
        raise CodecError(f"cannot allocate {numel} elements of {dtype} for a decoded payload: {error}") from None


def check_section_sizes(header: Header, sections: list[memoryview], expected: list[int]) -> None:
    """Raise ``CodecError`` unless the sections have exactly the sizes the header implies."""
    actual = [len(s) for s in sections]
    if actual != expected:
        raise CodecError(
            f"{header.codec.name} payload for shape {header.shape}: sections {actual}, expected {expected}"
        )


def unpack_matching(
    codec: Codec, payload: bytes | bytearray | memoryview, out: torch.Tensor
) -> tuple[Header, list[memoryview]]:
    """Unpack a payload for the target ``out``: of ``codec``'s family, exactly ``out.numel()`` elements (the
    caller's bound: ``out`` is already allocated), in ``out``'s shape, or in any shape when either of the
    two is flat (at most 1-D): a flat buffer takes any layout, but two different layouts of the same size
    mean that sender and receiver disagree about the tensor."""
    header, sections = unpack(payload, out.numel())
    if header.codec != codec.codec_id:
        raise CodecError(f"{codec.name} cannot decode a {header.codec.name} payload")
    if header.numel != out.numel():
        raise CodecError(f"payload holds {header.numel} elements, the target has {out.numel()}")
    if header.shape != tuple(out.shape) and len(header.shape) > 1 and out.dim() > 1:
        raise CodecError(f"payload has shape {header.shape}, the target {tuple(out.shape)}")
    return header, sections


class Codec(ABC):
    """Encodes a tensor into a self-describing payload and decodes it back."""

    codec_id: ClassVar[CodecId]
    name: str  # registry name of this configured instance, e.g. "int8" or "topk1pct"

    @abstractmethod
    def encode(self, tensor: torch.Tensor) -> bytes:
        """Compress ``tensor`` (any shape, floating dtype, CPU) into a payload."""

    @classmethod
    @abstractmethod
    def decode_sections(cls, header: Header, sections: list[memoryview]) -> torch.Tensor:
        """Rebuild the tensor from framing that ``unpack`` validated (so ``header.numel`` is within the
        caller's bound); check every section before allocating, and allocate through ``allocate``."""

    @abstractmethod
    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        """Expected payload bytes / raw bytes for a tensor of ``numel`` elements of ``dtype``."""

    def decode(
        self,
        payload: bytes | bytearray | memoryview,
        max_elements: int | None = None,
        *,
        shape: Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Decode a payload of this codec's family; ``CodecError`` for anything malformed.

        ``max_elements`` bounds the tensor (and so the memory) a payload may ask for; ``shape`` and ``dtype``
        are what the caller expects, exactly. See ``wire.unpack`` for the defaults.
        """
        header, sections = unpack(payload, max_elements, shape=shape, dtype=dtype)
        if header.codec != self.codec_id:
            raise CodecError(f"{self.name} cannot decode a {header.codec.name} payload")
        return self.decode_sections(header, sections)

    def encode_with_feedback(self, tensor: torch.Tensor, residual: torch.Tensor) -> bytes:
        """Encode ``tensor + residual`` and leave the compression error in ``residual`` (in place).

        ``residual`` is a flat float32 buffer of ``tensor.numel()`` elements. Codecs override this
        when they can compute the error without a full decode.
        """
        residual.add_(flat_float(tensor))
        payload = self.encode(residual.view(tensor.shape))  # the payload keeps the tensor's shape
        residual.sub_(self.decode(payload, max_elements=residual.numel()).reshape(-1).to(residual.dtype))
        return payload

    def decode_accumulate(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, alpha: float = 1.0
    ) -> None:
        """``out += alpha * decode(payload)``; sparse codecs override this to touch only what was sent.

        The payload must fit ``out`` (see ``unpack_matching``); on any error ``out`` is left untouched.
        """
        decoded = self.decode_sections(*unpack_matching(self, payload, out))
        out.add_(decoded.reshape(out.shape).to(out.dtype), alpha=alpha)

    def decode_into(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, *, require_finite: bool = False
    ) -> None:
        """``out[...] = decode(payload)`` (cast to ``out``'s dtype); families override it to skip the temporary.

        ``require_finite``: refuse (``CodecError``) a payload that decodes to NaN or Inf. The payload must
        fit ``out`` (see ``unpack_matching``). On any error ``out`` is left untouched.
        """
        decoded = self.decode_sections(*unpack_matching(self, payload, out))
        if require_finite and not all_finite(decoded):
            raise CodecError(NON_FINITE)
        out.copy_(decoded.reshape(out.shape))

    def validate(self, payload: bytes | bytearray | memoryview, numel: int) -> None:
        """Raise ``CodecError`` unless ``payload`` is of this family, holds ``numel`` elements and decodes to
        finite values; families override it to check without decoding."""
        self.decode_into(payload, torch.empty(numel), require_finite=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
