"""Codecs that only change the float format: none (lossless), fp16 and bf16."""

from __future__ import annotations

from typing import ClassVar

import torch

from swarmnet.compression.base import (
    NON_FINITE,
    Codec,
    all_finite,
    allocate,
    as_bytes,
    check_section_sizes,
    flat_float,
    section_tensor,
    unpack_matching,
)
from swarmnet.compression.wire import CodecId, Header, pack
from swarmnet.errors import CodecError
from swarmnet.kernels.threads import parallel_map, spans

__all__ = ["BFloat16Codec", "Float16Codec", "NoneCodec"]


def _from_bytes(
    section: memoryview, wire_dtype: torch.dtype, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    """Copy the section out as ``dtype`` in one pass (the payload buffer itself is read-only)."""
    values = section_tensor(section, wire_dtype)
    out = allocate(values.numel(), dtype)
    parallel_map(lambda span: out[span[0] : span[1]].copy_(values[span[0] : span[1]]), spans(values.numel()))
    return out.view(shape)


class _CastCodec(Codec):
    wire_dtype: ClassVar[torch.dtype | None]  # None keeps the tensor's own dtype

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, tensor: torch.Tensor) -> bytes:
        """Store the values in the wire dtype."""
        flat = flat_float(tensor)
        wire = flat if self.wire_dtype is None else flat.to(self.wire_dtype)
        return pack(self.codec_id, tensor.dtype, tensor.shape, [as_bytes(wire)])

    @classmethod
    def decode_sections(cls, header: Header, sections: list[memoryview]) -> torch.Tensor:
        """Reinterpret the section as the wire dtype and cast back to the original dtype."""
        wire_dtype = header.dtype if cls.wire_dtype is None else cls.wire_dtype
        check_section_sizes(header, sections, [header.numel * wire_dtype.itemsize])
        return _from_bytes(sections[0], wire_dtype, header.dtype, header.shape)

    def decode_accumulate(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, alpha: float = 1.0
    ) -> None:
        """``out += alpha * decode(payload)`` straight from the payload's bytes (no decoded copy)."""
        view, dtype = self._wire_values(payload, out)
        if not out.is_contiguous() or out.device.type != "cpu":
            out.add_(view.to(dtype), alpha=alpha)
            return
        flat, wire = out.view(-1), view.reshape(-1)
        # In pieces on the kernels' threads (see swarmnet.kernels.threads); each piece rounds to the payload's
        # dtype first, as decode() does.
        parallel_map(lambda s: flat[s[0] : s[1]].add_(wire[s[0] : s[1]].to(dtype), alpha=alpha), spans(flat.numel()))

    def decode_into(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, *, require_finite: bool = False
    ) -> None:
        """``out[...] = decode(payload)`` straight from the payload's bytes (no decoded copy)."""
        view = self._wire_view(payload, out)
        if require_finite and not all_finite(view):
            raise CodecError(NON_FINITE)
        out.copy_(view)

    def validate(self, payload: bytes | bytearray | memoryview, numel: int) -> None:
        """Check the framing and that every value is finite, reading the payload once (nothing decoded)."""
        if not all_finite(self._wire_view(payload, torch.empty(numel, device="meta"))):
            raise CodecError(NON_FINITE)

    def _wire_view(self, payload: bytes | bytearray | memoryview, out: torch.Tensor) -> torch.Tensor:
        """The payload's values as a read-only tensor shaped like ``out``, after every check ``decode`` makes."""
        view, dtype = self._wire_values(payload, out)
        # decode() rounds to the payload's dtype first; so must we, for the same values.
        return view.to(dtype)

    def _wire_values(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.dtype]:
        """The payload's values in the wire dtype, shaped like ``out`` (read-only), and the payload's dtype;
        after every check ``decode`` makes."""
        header, sections = unpack_matching(self, payload, out)
        wire_dtype = header.dtype if self.wire_dtype is None else self.wire_dtype
        check_section_sizes(header, sections, [header.numel * wire_dtype.itemsize])
        return section_tensor(sections[0], wire_dtype).view(out.shape), header.dtype

    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        """Exact: the wire dtype's size over the input's."""
        if self.wire_dtype is None:
            return 1.0
        return self.wire_dtype.itemsize / dtype.itemsize


class NoneCodec(_CastCodec):
    """Lossless: the raw values."""

    codec_id = CodecId.NONE
    wire_dtype = None


_FP16_MAX = torch.finfo(torch.float16).max


class Float16Codec(_CastCodec):
    """IEEE half precision: 2 bytes per value, relative error at most 2**-11 (saturates at 65504)."""

    codec_id = CodecId.FP16
    wire_dtype = torch.float16

    def encode(self, tensor: torch.Tensor) -> bytes:
        """Saturate at +-65504 rather than send infinities (an inf would poison every average)."""
        flat = flat_float(tensor).reshape(-1)
        wire = torch.empty(flat.numel(), dtype=torch.float16)

        def cast(span: tuple[int, int]) -> None:
            piece = flat[span[0] : span[1]]
            low, high = torch.aminmax(piece)
            if float(high) > _FP16_MAX or float(low) < -_FP16_MAX:
                piece = piece.clamp(-_FP16_MAX, _FP16_MAX)
            wire[span[0] : span[1]].copy_(piece)

        parallel_map(cast, spans(flat.numel()))  # in pieces: see swarmnet.kernels.threads
        return pack(self.codec_id, tensor.dtype, tensor.shape, [as_bytes(wire)])


class BFloat16Codec(_CastCodec):
    """bfloat16: 2 bytes per value, fp32's range, relative error at most 2**-8."""

    codec_id = CodecId.BF16
    wire_dtype = torch.bfloat16
