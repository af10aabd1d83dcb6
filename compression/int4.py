"""int4: blockwise absmax quantization to [-7, 7], two values per byte."""

from __future__ import annotations

import torch

from swarmnet.compression.blockwise import BlockwiseCodec
from swarmnet.compression.wire import CodecId

__all__ = ["Int4Codec"]


class Int4Codec(BlockwiseCodec):
    """Per block of ``block_size`` elements: fp32 scale ``absmax / 7``, values ``q = round(x / scale)`` in
    ``[-7, 7]`` stored as the nibble ``q + 8`` (offset binary, 1..15).

    Each element decodes within ``scale / 2 = absmax / 14`` of its value (absmax: of its block); a zero
    block decodes to zeros. Element ``2i`` is the low nibble of byte ``i``, element ``2i + 1`` its high
    nibble; for an odd count the last high nibble is 8 (a zero); this is the layout of
    ``swarmnet.kernels.blockwise`` with ``bits=4``. Payload bytes for ``numel`` elements and ``ndim``
    dimensions::

        (40 + 8 * ndim) + 4 + 4 * ceil(numel / block_size) + ceil(numel / 2)

    (wire header, params: block size u32 LE, scales: f32 per block, values: packed nibbles).
    """

    codec_id = CodecId.INT4
    bits = 4
    qmax = 7
    level_bound = 8  # a nibble decodes to -8..7
    _values_dtype = torch.uint8

    def __init__(self, name: str, block_size: int = 1024) -> None:
        super().__init__(name, block_size)
