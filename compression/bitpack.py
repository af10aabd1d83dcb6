"""Fixed-width bit packing of unsigned integers, vectorised with numpy.

Value ``i`` occupies bits ``[i * width, (i + 1) * width)`` of the little-endian bit stream: bit
``j`` of the stream is bit ``j % 8`` of byte ``j // 8``. The last byte is zero-padded, so
``count`` values take exactly ``packed_size(count, width)`` bytes. Both directions work on whole
arrays (``np.unpackbits`` / ``np.packbits`` over the values' little-endian bytes); there is no
Python loop over values.

``pack_indices`` / ``unpack_indices`` delta-code strictly increasing positions on top of that: the
first index travels on its own, then the ``count - 1`` gaps at the bit width of the largest one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_WIDTH", "bit_width", "pack_bits", "pack_indices", "packed_size", "unpack_bits", "unpack_indices"]

MAX_WIDTH = 64
_MAX_WINDOW_WIDTH = 57  # widest value an unaligned 8-byte load always covers (7 + 57 = 64 bits)


def packed_size(count: int, width: int) -> int:
    """Bytes taken by ``count`` values of ``width`` bits: ``ceil(count * width / 8)``."""
    return (count * width + 7) // 8


def bit_width(max_value: int) -> int:
    """Bits needed for values up to ``max_value`` (at least 1, so a width is never 0)."""
    return max(1, int(max_value).bit_length())


def _check_width(width: int) -> None:
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"bit width {width} is outside 1..{MAX_WIDTH}")


def pack_bits(values: npt.ArrayLike, width: int) -> bytes:
    """Pack non-negative integers below ``2**width`` into ``packed_size(len(values), width)`` bytes."""
    _check_width(width)
    flat = np.asarray(values).reshape(-1)
    if flat.size == 0:
        return b""
    if flat.dtype.kind == "i" and int(flat.min()) < 0:
        raise ValueError("cannot pack negative values")
    if flat.dtype.kind not in "iu":
        raise ValueError(f"can only pack integers, got {flat.dtype}")
    words = np.ascontiguousarray(flat, dtype="<u8")
    if width < MAX_WIDTH and int(words.max()) >> width:
        raise ValueError(f"a value of {int(words.max())} does not fit in {width} bits")
    nbytes = (width + 7) // 8
    # The low ``nbytes`` bytes of each little-endian word hold all of its significant bits.
    low_bytes = words.view(np.uint8).reshape(-1, 8)[:, :nbytes]
    if width % 8 == 0:
        return low_bytes.tobytes()  # byte-aligned: the bytes already are the stream
    bits = np.unpackbits(low_bytes, axis=1, bitorder="little")[:, :width]
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes | bytearray | memoryview, count: int, width: int) -> npt.NDArray[np.uint64]:
    """Inverse of ``pack_bits``: ``count`` values as uint64.

    ``ValueError`` unless ``data`` is exactly ``packed_size(count, width)`` bytes with zero padding bits,
    so every payload has a single valid encoding.
    """
    _check_width(width)
    if count < 0:
        raise ValueError(f"negative count {count}")
    raw = np.frombuffer(data, dtype=np.uint8)
    expected = packed_size(count, width)
    if raw.size != expected:
        raise ValueError(f"{count} values of {width} bits take {expected} bytes, got {raw.size}")
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    used_bits = (count * width) % 8
    if used_bits and int(raw[-1]) >> used_bits:
        raise ValueError("padding bits after the last value are not zero")
    if width <= _MAX_WINDOW_WIDTH:
        # Load the 8 bytes starting at each value's first byte as one unaligned little-endian word
        # (a stride-1 uint64 view of the zero-padded stream), then shift and mask: one word per value
        # instead of expanding to one byte per bit. A value starts at most 7 bits into its first byte, so
        # 7 + width <= 64 bits cover it.
        padded_stream = np.zeros(raw.size + 8, dtype=np.uint8)
        padded_stream[: raw.size] = raw
        windows: npt.NDArray[np.uint64] = np.ndarray(
            shape=(raw.size + 1,), dtype="<u8", buffer=padded_stream, strides=(1,)
        )
        start_bits = np.arange(count, dtype=np.uint64) * np.uint64(width)
        words = windows[(start_bits >> np.uint64(3)).astype(np.intp)]
        words >>= start_bits & np.uint64(7)
        words &= np.uint64((1 << width) - 1)
        return words.astype(np.uint64, copy=False)
    nbytes = (width + 7) // 8
    if width % 8 == 0:
        low_bytes = raw.reshape(count, nbytes)
    else:
        bits = np.unpackbits(raw, count=count * width, bitorder="little").reshape(count, width)
        padded = np.zeros((count, nbytes * 8), dtype=np.uint8)
        padded[:, :width] = bits
        low_bytes = np.packbits(padded, axis=1, bitorder="little")
    words = np.zeros((count, 8), dtype=np.uint8)
    words[:, :nbytes] = low_bytes
    return words.view("<u8").reshape(count).astype(np.uint64, copy=False)


def pack_indices(indices: npt.NDArray[np.int64]) -> tuple[int, int, bytes]:
    """``(first, width, packed gaps)`` of strictly increasing non-negative ``indices``.

    ``width`` is the bit length of the largest gap (1 when there are no gaps).
    """
    if indices.size == 0:
        return 0, 1, b""
    gaps = np.diff(indices)
    width = bit_width(int(gaps.max())) if gaps.size else 1
    return int(indices[0]), width, pack_bits(gaps, width)


def unpack_indices(
    data: bytes | bytearray | memoryview, count: int, first: int, width: int, limit: int
) -> npt.NDArray[np.int64]:
    """Inverse of ``pack_indices``; ``ValueError`` unless the result is strictly increasing and below ``limit``
    and ``width`` is the one ``pack_indices`` writes (the bit length of the largest gap; 1 without gaps).

    Only ``count``-sized arrays are allocated, so a hostile stream costs no more than its own size.
    """
    if count <= 1 and width != 1:
        raise ValueError(f"{count} indices have no gaps, but a gap width of {width} bits")
    if count == 0:
        if first or len(data):
            raise ValueError(f"no indices but first index {first} and {len(data)} bytes of gaps")
        return np.zeros(0, dtype=np.int64)
    if first >= limit:
        raise ValueError(f"first index {first} out of range for {limit} elements")
    gaps = unpack_bits(data, count - 1, width)
    if gaps.size and int(gaps.min()) == 0:
        raise ValueError("indices are not strictly increasing (a gap of 0)")
    if gaps.size and bit_width(int(gaps.max())) != width:
        raise ValueError(f"the largest gap takes {bit_width(int(gaps.max()))} bits, stored in {width}")
    positions = np.empty(count, dtype=np.uint64)
    positions[0] = first
    np.cumsum(gaps, out=positions[1:])
    positions[1:] += np.uint64(first)
    # Gaps are >= 1, so a step can only go down where the uint64 sum wrapped around.
    if int(positions[-1]) >= limit or bool(np.any(positions[1:] <= positions[:-1])):
        raise ValueError(f"indices run past the {limit} elements")
    return positions.astype(np.int64)
