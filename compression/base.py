"""The ``Codec`` interface: stateless tensor <-> bytes, with a fused error-feedback hook.

A codec instance is configured (block size, ratio, value format) and stateless; everything a
decoder needs travels in the payload (``wire.py``), so any peer decodes any payload without
knowing the sender's settings. Error-feedback residuals live outside, in ``ErrorFeedback``.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from swarmnet.compression.wire import DEFAULT_MAX_ELEMENTS, CodecId, Header, unpack
from swarmnet.errors import CodecError

__all__ = [
    "NON_FINITE",
    "Codec",
    "all_finite",
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
    prove every element finite; several times faster than ``isfinite().all()``. For float32 a sum
    is faster still (measured 25 us against 38 us per 256K elements): a NaN or an infinity makes it
    non-finite, so a finite sum proves every element finite, and only a non-finite one (which an
    overflow of finite values also gives) is settled by ``aminmax``.
    """
    if not values.numel():
        return True
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
    """Unpack a payload that must be of ``codec``'s family and hold exactly ``out.numel()`` elements (the
    checks and messages of ``Codec.decode_accumulate``)."""
    header, sections = unpack(payload, min(out.numel(), DEFAULT_MAX_ELEMENTS))
    if header.codec != codec.codec_id:
        raise CodecError(f"{codec.name} cannot decode a {header.codec.name} payload")
    if header.numel != out.numel():
        raise CodecError(f"payload holds {header.numel} elements, the target has {out.numel()}")
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
        """Rebuild the tensor from validated framing; check section sizes before allocating."""

    @abstractmethod
    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        """Expected payload bytes / raw bytes for a tensor of ``numel`` elements of ``dtype``."""

    def decode(
        self, payload: bytes | bytearray | memoryview, max_elements: int = DEFAULT_MAX_ELEMENTS
    ) -> torch.Tensor:
        """Decode a payload of this codec's family; ``CodecError`` for anything malformed."""
        header, sections = unpack(payload, max_elements)
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
        residual.sub_(self.decode(payload).reshape(-1).to(residual.dtype))
        return payload

    def decode_accumulate(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, alpha: float = 1.0
    ) -> None:
        """``out += alpha * decode(payload)``; sparse codecs override this to touch only what was sent."""
        decoded = self.decode(payload, max_elements=out.numel())
        if decoded.numel() != out.numel():
            raise CodecError(f"payload holds {decoded.numel()} elements, the target has {out.numel()}")
        out.add_(decoded.reshape(out.shape).to(out.dtype), alpha=alpha)

    def decode_into(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, *, require_finite: bool = False
    ) -> None:
        """``out[...] = decode(payload)`` (cast to ``out``'s dtype); families override it to skip the temporary.

        ``require_finite``: refuse (``CodecError``) a payload that decodes to NaN or Inf. On any error
        ``out`` is left untouched.
        """
        decoded = self.decode(payload, max_elements=out.numel())
        if decoded.numel() != out.numel():
            raise CodecError(f"payload holds {decoded.numel()} elements, the target has {out.numel()}")
        if require_finite and not all_finite(decoded):
            raise CodecError(NON_FINITE)
        out.copy_(decoded.reshape(out.shape))

    def validate(self, payload: bytes | bytearray | memoryview, numel: int) -> None:
        """Raise ``CodecError`` unless ``payload`` is of this family, holds ``numel`` elements and decodes to
        finite values; families override it to check without decoding."""
        self.decode_into(payload, torch.empty(numel), require_finite=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
