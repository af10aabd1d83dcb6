"""Secure aggregation's field encoding and shared coordinate subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swarmnet.federated.secure_update import (
    decode_sum,
    encode_values,
    field_config,
    from_wire,
    indices_from_bytes,
    indices_to_bytes,
    informed_subset,
    subset,
    to_wire,
)


def test_subsets_are_shared_and_sized() -> None:
    a, b = subset(1000, 0.1, seed=7), subset(1000, 0.1, seed=7)
    assert torch.equal(a, b)
    assert a.numel() == 100
    assert bool((a[1:] > a[:-1]).all())
    assert subset(10, 1.0, seed=1).tolist() == list(range(10))


def test_informed_subset_keeps_the_largest_and_explores() -> None:
    scores = torch.zeros(1000)
    scores[:50] = torch.arange(50, 0, -1).float()  # coordinates 0..49 mattered last round
    chosen = informed_subset(1000, 0.1, seed=3, scores=scores, explore=0.5)
    assert chosen.numel() == 100
    assert set(range(50)) <= set(chosen.tolist())  # the top half of the budget
    assert len(set(chosen.tolist()) - set(range(50))) == 50  # the rest explores
    assert torch.equal(informed_subset(1000, 0.1, seed=3, scores=None), subset(1000, 0.1, seed=3))


def test_indices_round_trip_and_reject_garbage() -> None:
    indices = subset(500, 0.2, seed=0)
    assert torch.equal(indices_from_bytes(indices_to_bytes(indices), 500), indices)
    for bad in (b"\x01\x02\x03", indices_to_bytes(torch.tensor([3, 2])), indices_to_bytes(torch.tensor([600]))):
        with pytest.raises(ValueError, match="subset"):
            indices_from_bytes(bad, 500)


@pytest.mark.parametrize("bits", [16, 32])
def test_sums_decode_exactly_up_to_quantization(bits: int) -> None:
    config = field_config(bits, clip=0.5, max_clients=16)
    values = [torch.linspace(-0.5, 0.5, 64) * (i + 1) / 16 for i in range(16)]
    words = [encode_values(v, config, torch.Generator().manual_seed(i)) for i, v in enumerate(values)]
    wire = [from_wire(to_wire(w, bits), bits, 64) for w in words]
    total = np.sum(np.stack(wire).astype(np.uint64), axis=0) % (1 << 32)
    decoded = decode_sum(total.astype(np.uint32), config, bits)
    step = 0.5 / config.levels
    assert (decoded - torch.stack(values).sum(dim=0)).abs().max() <= 16 * step + 1e-6
    with pytest.raises(ValueError, match="bytes"):
        from_wire(b"\0" * 5, bits, 64)
