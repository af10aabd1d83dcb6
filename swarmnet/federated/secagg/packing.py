"""Several small non-negative integers per uint32 field word, so their sums stay exact and cheap.

Masking adds uniform words mod 2^32, and the coordinator unmasks the mod-2^32 sum of the words.
If every input word holds ``32 // bits`` slots of ``bits`` bits and the sum of any one slot over
all clients stays below ``2**bits``, no slot carries into the next and the unmasked word holds
each slot's exact sum side by side. So ``n`` clients' values in ``[0, v]`` need only
``bits = (n * v).bit_length()`` bits each on the wire, instead of a word each.

Slot ``j`` of word ``i`` holds value ``i * (32 // bits) + j`` at bit ``j * bits`` (lowest first);
slots past the last value are zero.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from swarmnet.errors import ConfigError
from swarmnet.federated.secagg.field import U32Array

__all__ = ["pack", "packed_words", "slot_bits", "unpack"]

WORD_BITS = 32


def slot_bits(max_sum: int) -> int:
    """The slot width that holds every integer in ``[0, max_sum]`` (the largest sum over all clients)."""
    if not 1 <= max_sum < 2**WORD_BITS:
        raise ConfigError(f"a packed slot holds sums in [0, max_sum] with max_sum in [1, 2^32), got {max_sum}")
    return int(max_sum).bit_length()


def packed_words(count: int, bits: int) -> int:
    """How many words ``count`` values of ``bits`` bits take."""
    per_word = _per_word(bits)
    return -(-count // per_word)


def pack(values: npt.NDArray[np.int64], bits: int) -> U32Array:
    """Pack ``values`` (each in ``[0, 2**bits)``) into uint32 words; ``ValueError`` for a value out of range."""
    per_word = _per_word(bits)
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"packed values must lie in [0, 2^{bits}), got [{int(flat.min())}, {int(flat.max())}]")
    slots = np.zeros(packed_words(flat.size, bits) * per_word, dtype=np.uint64)
    slots[: flat.size] = flat
    shifts = np.arange(per_word, dtype=np.uint64) * np.uint64(bits)
    words: U32Array = (slots.reshape(-1, per_word) << shifts).sum(axis=1, dtype=np.uint64).astype(np.uint32)
    return words


def unpack(words: U32Array, bits: int, count: int) -> npt.NDArray[np.int64]:
    """The first ``count`` slot values of ``words`` (the inverse of ``pack``, and of a sum of packs)."""
    per_word = _per_word(bits)
    if words.dtype != np.uint32 or words.shape != (packed_words(count, bits),):
        raise ValueError(f"{count} values of {bits} bits take {packed_words(count, bits)} uint32 words")
    shifts = np.arange(per_word, dtype=np.uint64) * np.uint64(bits)
    slots = (words.astype(np.uint64)[:, None] >> shifts) & np.uint64((1 << bits) - 1)
    return slots.reshape(-1)[:count].astype(np.int64)


def _per_word(bits: int) -> int:
    if not 1 <= bits <= WORD_BITS:
        raise ConfigError(f"a packed slot has 1 to {WORD_BITS} bits, got {bits}")
    return WORD_BITS // bits
