"""int8: blockwise absmax quantization to [-127, 127], one byte per value."""

from __future__ import annotations

import torch

from swarmnet.compression.blockwise import BlockwiseCodec, Fill, Region
from swarmnet.compression.wire import CodecId

__all__ = ["Int8Codec"]


class Int8Codec(BlockwiseCodec):
    """Per block of ``block_size`` elements: fp32 scale ``absmax / 127``, values ``round(x / scale)`` as int8.

    Each element decodes within ``scale / 2 = absmax / 254`` of its value (absmax: of its block); a zero
    block decodes to zeros. Payload bytes for a tensor of ``numel`` elements and ``ndim`` dimensions::

        (40 + 8 * ndim) + 4 + 4 * ceil(numel / block_size) + numel

    (wire header, params: block size u32 LE, scales: f32 per block, values: int8 per element).
    """

    codec_id = CodecId.INT8
    qmax = 127

    def __init__(self, name: str, block_size: int = 4096) -> None:
        super().__init__(name, block_size)

    @staticmethod
    def values_size(numel: int) -> int:
        """One byte per element."""
        return numel

    def _storer(self, values: torch.Tensor, longest: int) -> Fill:
        signed = values.view(torch.int8)

        def store(region: Region, rounded: torch.Tensor) -> None:
            signed[region.start : region.stop].copy_(rounded)  # exact: the values are integers in [-127, 127]

        return store

    @classmethod
    def _loader(cls, values: torch.Tensor, longest: int) -> Fill:
        signed = values.view(torch.int8)

        def load(region: Region, out: torch.Tensor) -> None:
            out.copy_(signed[region.start : region.stop])

        return load
