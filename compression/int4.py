"""int4: blockwise absmax quantization to [-7, 7], two values per byte."""

from __future__ import annotations

import torch

from swarmnet.compression.blockwise import BlockwiseCodec, Fill, Region
from swarmnet.compression.wire import CodecId

__all__ = ["Int4Codec"]


class Int4Codec(BlockwiseCodec):
    """Per block of ``block_size`` elements: fp32 scale ``absmax / 7``, values ``q = round(x / scale)`` in
    ``[-7, 7]`` stored as the nibble ``q + 8`` (offset binary, 1..15).

    Each element decodes within ``scale / 2 = absmax / 14`` of its value (absmax: of its block); a zero
    block decodes to zeros. Element ``2i`` is the low nibble of byte ``i``, element ``2i + 1`` its high
    nibble; for an odd count the last high nibble is 8 (a zero). Payload bytes for ``numel`` elements and
    ``ndim`` dimensions::

        (40 + 8 * ndim) + 4 + 4 * ceil(numel / block_size) + ceil(numel / 2)

    (wire header, params: block size u32 LE, scales: f32 per block, values: packed nibbles).
    """

    codec_id = CodecId.INT4
    qmax = 7
    align = 2

    def __init__(self, name: str, block_size: int = 1024) -> None:
        super().__init__(name, block_size)

    @staticmethod
    def values_size(numel: int) -> int:
        """Two elements per byte, rounded up."""
        return (numel + 1) // 2

    def _storer(self, values: torch.Tensor, longest: int) -> Fill:
        # Regions start on even elements (align = 2), so each packs into whole bytes of its own. The
        # nibbles go through int8/int16 views of a reused scratch buffer: byte pairs (a, b) read as the
        # int16 a + 256 b, and (w | w >> 4) has a | b << 4 in its low byte, which the int16 -> uint8 copy
        # keeps (conversion to an unsigned type is modular).
        nibbles = torch.empty(longest + 1, dtype=torch.int8)
        shifted = torch.empty(longest // 2 + 1, dtype=torch.int16)

        def store(region: Region, rounded: torch.Tensor) -> None:
            size, n_bytes = region.size, (region.size + 1) // 2
            pairs = nibbles[: 2 * n_bytes]
            pairs[:size].copy_(rounded)
            pairs[size:].zero_()  # the padding value of an odd count
            pairs.view(torch.uint8).add_(8)
            words = pairs.view(torch.int16)
            packed = torch.bitwise_right_shift(words, 4, out=shifted[:n_bytes]).bitwise_or_(words)
            values[region.start // 2 : region.start // 2 + n_bytes].copy_(packed)

        return store

    @classmethod
    def _loader(cls, values: torch.Tensor, longest: int) -> Fill:
        # The inverse spread: byte p = a | b << 4 as the int16 p, and (p | p << 4) & 0x0F0F holds a in its
        # low byte and b in its high byte, i.e. the nibbles in element order when read as bytes.
        words = torch.empty(longest // 2 + 1, dtype=torch.int16)
        shifted = torch.empty(longest // 2 + 1, dtype=torch.int16)

        def load(region: Region, out: torch.Tensor) -> None:
            n_bytes = (region.size + 1) // 2
            w = words[:n_bytes].copy_(values[region.start // 2 : region.start // 2 + n_bytes])
            w.bitwise_or_(torch.bitwise_left_shift(w, 4, out=shifted[:n_bytes])).bitwise_and_(0x0F0F)
            offset = w.view(torch.uint8).sub_(8)  # modular: 1..15 - 8 read as int8 is -7..7
            out.copy_(offset.view(torch.int8)[: region.size])

        return load
