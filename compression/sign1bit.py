"""sign1bit: one bit per value plus one scale per chunk, with error feedback fused into one kernel pass."""

from __future__ import annotations

import torch

from swarmnet.buffers import zeros
from swarmnet.compression.base import allocate, as_bytes, check_section_sizes, flat_float, section_tensor
from swarmnet.compression.blockwise import (
    MAX_BLOCK,
    ScaledBlocksCodec,
    check_scales,
    feedback_source,
    fp32_source,
    fused_target,
    n_blocks,
    pack_params,
    read_block_size,
    shares_memory,
)
from swarmnet.compression.wire import CodecId, Header, pack
from swarmnet.errors import CodecError
from swarmnet.kernels.sign import ef_sign_encode, sign_decode_accumulate, sign_decode_into

__all__ = ["Sign1BitCodec"]


class Sign1BitCodec(ScaledBlocksCodec):
    """Per chunk of ``chunk_size`` elements: the scale ``mean |x|`` and one bit ``x >= 0`` per element; decodes
    to ``+scale`` where the bit is set, ``-scale`` elsewhere.

    ``mean |x|`` is the scale that minimises the L2 error of ``scale * sign(x)`` (as in signSGD with scale and
    1-bit Adam); the error it leaves is what error feedback carries to the next step. Note that -0.0 >= 0, so
    zeros of either sign decode to ``+scale``. Bits are packed most significant first (numpy's packbits
    order): element ``i`` is bit ``7 - i % 8`` of byte ``i // 8``; unused bits of the last byte are zero.
    This is the layout of ``swarmnet.kernels.sign``, which does the per-element work. Payload bytes for
    ``numel`` elements and ``ndim`` dimensions::

        (40 + 8 * ndim) + 4 + 4 * ceil(numel / chunk_size) + ceil(numel / 8)

    (wire header, params: chunk size u32 LE, scales: f32 per chunk, bits). For large tensors that is
    ``1/32 + 1/chunk_size`` of fp32: 3.15% at the default 4096.
    """

    codec_id = CodecId.SIGN1
    level_bound = 1  # values decode to +-scale

    def __init__(self, name: str, chunk_size: int = 4096) -> None:
        if not 1 <= chunk_size <= MAX_BLOCK:
            raise ValueError(f"chunk_size must be in [1, {MAX_BLOCK}], got {chunk_size}")
        self.name = name
        self.chunk_size = chunk_size

    def encode(self, tensor: torch.Tensor) -> bytes:
        """Chunk scales and sign bits of ``tensor``.

        The kernel encodes ``grad + residual`` with feedback; here one of the two is zero, so ``v = x``
        exactly (up to the sign of zeros, which both give the bit 1) and the residual it leaves is scratch.
        """
        flat = flat_float(tensor.detach())
        x = fp32_source(flat)
        if x is flat:  # the caller's memory: read it as grad, into a fresh zeroed residual
            bits, scales = ef_sign_encode(x, zeros(x.numel()), self.chunk_size)
        else:  # our own fp32 copy: use it as the residual, with a zero stride-0 grad
            bits, scales = ef_sign_encode(torch.zeros(()).expand(x.numel()), x, self.chunk_size)
        return self._pack(bits, scales, tensor.dtype, tensor.shape)

    def encode_with_feedback(self, tensor: torch.Tensor, residual: torch.Tensor) -> bytes:
        """Encode ``tensor + residual`` and leave the compression error in ``residual``, in one kernel pass.

        No full-size decoded tensor is built. The payload and the residual equal those of the generic
        ``Codec.encode_with_feedback``; residuals that are not flat fp32 CPU memory take that generic path.
        """
        flat = flat_float(tensor.detach())
        if not fused_target(residual) or residual.numel() != flat.numel() or shares_memory(flat, residual):
            return super().encode_with_feedback(tensor, residual)
        res = residual.view(-1)
        bits, scales = ef_sign_encode(feedback_source(flat, res), res, self.chunk_size)
        return self._pack(bits, scales, residual.dtype, tensor.shape)

    def _pack(self, bits: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype, shape: torch.Size) -> bytes:
        sections: list[bytes | memoryview] = [pack_params(self.chunk_size), as_bytes(scales), as_bytes(bits)]
        return pack(self.codec_id, dtype, shape, sections)

    @classmethod
    def _validated(cls, header: Header, sections: list[memoryview]) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Chunk size, scales and bits of a payload whose every section size and scale has been checked, and
        whose unused bits (after the last sign, in the last byte) are zero: the one encoding of it."""
        chunk = read_block_size(header, sections, "chunk size")
        numel = header.numel
        check_section_sizes(header, sections, [4, 4 * n_blocks(numel, chunk), (numel + 7) // 8])
        if numel % 8 and sections[2][-1] & (0xFF >> numel % 8):
            raise CodecError(f"{header.codec.name} payload: the padding bits after the last sign are not zero")
        scales = section_tensor(sections[1], torch.float32)
        check_scales(header, scales)
        return chunk, scales, section_tensor(sections[2], torch.uint8)

    @classmethod
    def _accumulate(
        cls, acc: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, block: int, weight: float
    ) -> None:
        """``acc += weight * decoded``, rounded as ``Tensor.add_(decoded, alpha=weight)`` (what ``decode_accumulate``
        promises): the kernel's own weighting rounds ``weight * scale`` before adding, torch's ``add_`` fuses the
        multiply-add, so they differ by an ulp. With weight 1 both are exact and the kernel adds in place; other
        weights decode into a full-size temporary first."""
        if weight == 1.0:
            sign_decode_accumulate(acc, values, scales, block)
            return
        decoded = allocate(acc.numel(), torch.float32, zero=True)
        sign_decode_accumulate(decoded, values, scales, block)
        acc.view(-1).add_(decoded, alpha=weight)

    @classmethod
    def _decode_into(cls, out: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, block: int) -> None:
        """Signs looked up straight into ``out`` and scaled, without zeroing and re-reading it first."""
        sign_decode_into(out, values, scales, block)

    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        """Exact for ``numel > 0``: section bytes over raw bytes (the wire header is not counted)."""
        numel = max(numel, 1)
        return (4 + 4 * n_blocks(numel, self.chunk_size) + (numel + 7) // 8) / (numel * dtype.itemsize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, chunk_size={self.chunk_size})"
