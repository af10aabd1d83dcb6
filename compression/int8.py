"""int8: blockwise absmax quantization to [-127, 127], one byte per value."""

from __future__ import annotations

import torch

from swarmnet.compression.blockwise import BlockwiseCodec
from swarmnet.compression.wire import CodecId

__all__ = ["Int8Codec"]


class Int8Codec(BlockwiseCodec):
    """Per block of ``block_size`` elements: fp32 scale ``absmax / 127``, values ``round(x / scale)`` as int8.

    Each element decodes within ``scale / 2 = absmax / 254`` of its value (absmax: of its block); a zero
    block decodes to zeros. Payload bytes for a tensor of ``numel`` elements and ``ndim`` dimensions::

        (40 + 8 * ndim) + 4 + 4 * ceil(numel / block_size) + numel

    (wire header, params: block size u32 LE, scales: f32 per block, values: int8 per element, the layout of
    ``swarmnet.kernels.blockwise`` with ``bits=8``).
    """

    codec_id = CodecId.INT8
    bits = 8
    qmax = 127
    level_bound = 128  # a sender may store -128
    _values_dtype = torch.int8

    def __init__(self, name: str, block_size: int = 4096) -> None:
        super().__init__(name, block_size)
