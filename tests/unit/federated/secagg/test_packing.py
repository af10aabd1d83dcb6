"""Packed slots: several values per field word whose sums over clients stay exact."""

from __future__ import annotations

import numpy as np
import pytest

from swarmnet.errors import ConfigError
from swarmnet.federated.secagg.packing import pack, packed_words, slot_bits, unpack


@pytest.mark.parametrize(("max_sum", "bits"), [(1, 1), (2, 2), (16, 5), (32, 6), (2**32 - 1, 32)])
def test_slot_bits(max_sum: int, bits: int) -> None:
    assert slot_bits(max_sum) == bits


@pytest.mark.parametrize("bad", [0, -1, 2**32])
def test_slot_bits_rejects_impossible_sums(bad: int) -> None:
    with pytest.raises(ConfigError):
        slot_bits(bad)


@pytest.mark.parametrize(("clients", "top"), [(8, 2), (16, 2), (5, 14), (2, 2**15)])
def test_word_sums_unpack_to_the_exact_slot_sums(clients: int, top: int) -> None:
    """The worst case included: every client at the top value in every slot, and sums that wrap mod 2^32."""
    bits = slot_bits(clients * top)
    rng = np.random.default_rng(clients)
    values = [rng.integers(0, top + 1, size=1003) for _ in range(clients)]
    values[0][:50] = top
    for v in values[1:]:
        v[:50] = top  # slot sums at their maximum
    total = np.zeros(packed_words(1003, bits), dtype=np.uint32)
    for v in values:
        total += pack(v, bits)  # uint32 arithmetic wraps: the field Z_2^32
    summed = unpack(total, bits, 1003)
    assert np.array_equal(summed, np.sum(values, axis=0))
    assert int(summed[:50].min()) == clients * top


def test_pack_round_trips_and_counts_words() -> None:
    values = np.arange(13, dtype=np.int64) % 32
    words = pack(values, 5)
    assert words.dtype == np.uint32
    assert words.shape == (packed_words(13, 5),) == (3,)  # 6 slots of 5 bits per word
    assert np.array_equal(unpack(words, 5, 13), values)
    assert unpack(pack(np.zeros(0, dtype=np.int64), 7), 7, 0).size == 0


def test_pack_refuses_values_that_would_spill_into_the_next_slot() -> None:
    with pytest.raises(ValueError, match="packed values"):
        pack(np.array([0, 32]), 5)
    with pytest.raises(ValueError, match="packed values"):
        pack(np.array([-1]), 5)
    with pytest.raises(ValueError, match="words"):
        unpack(np.zeros(2, dtype=np.uint32), 5, 13)
    with pytest.raises(ConfigError):
        pack(np.array([1]), 33)
