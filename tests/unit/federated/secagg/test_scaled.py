"""The shared-scale encoding: exact sums under masks and dropouts, scales that follow the updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swarmnet.coordinator.secagg_unmask import threshold_for
from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.secagg.packing import pack, packed_words, unpack
from swarmnet.federated.secagg.scaled import MAX_SCALE_STEP, ScaledEncoding, default_scales
from tests.unit.federated.secagg.simulation import aggregate, field_sum, make_clients, run_round

LENGTH = 3_000
BLOCK = 512


def _encoding(levels: int = 1, participants: int = 7, scale: float = 0.01) -> ScaledEncoding:
    encoding = ScaledEncoding(
        levels=levels, block=BLOCK, scales=default_scales(LENGTH, BLOCK, scale), participants=participants
    )
    encoding.validate(LENGTH)
    return encoding


def _updates(count: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(LENGTH, generator=generator) * 0.01 * (1 + i) for i in range(count)]


@pytest.mark.parametrize("levels", [1, 3])
def test_masked_sum_with_dropouts_is_the_exact_sum_of_the_survivors_integers(levels: int) -> None:
    """7 clients, threshold 5: one drops before submitting (its masks are recovered from shares),
    one after (its self mask is removed); the unmasked words decode to the survivors' exact sum."""
    n, threshold = 7, threshold_for(7)
    assert threshold < n
    encoding, positions = _encoding(levels, n), torch.arange(LENGTH)
    clients = make_clients(n, threshold, seed=5)
    updates = zip(clients, _updates(n, 5), strict=True)
    encoded = {c.client_id: encoding.encode(x, positions, x, None) for c, x in updates}
    ids = [c.client_id for c in clients]
    result = run_round(
        clients,
        {k: words for k, (words, _) in encoded.items()},
        drop_after_sharing={ids[1]},
        drop_after_masking={ids[4]},
    )
    survivors = [k for k in ids if k != ids[1]]
    assert sorted(result.masked) == sorted(survivors)
    total = aggregate(result, threshold, encoding.words(LENGTH))
    assert np.array_equal(total, field_sum([encoded[k][0] for k in survivors]))
    decoded = encoding.decode(total, positions, len(survivors))
    expected = torch.stack([encoded[k][1] for k in survivors]).double().sum(dim=0)
    assert torch.allclose(decoded.values.double(), expected, rtol=1e-6, atol=1e-9)  # float32 scales
    slots = unpack(total[: packed_words(LENGTH, encoding.slot_bits)], encoding.slot_bits, LENGTH)
    assert int(slots.max()) <= 2 * levels * len(survivors)  # no slot ever carried into the next


def test_values_are_integers_in_range_times_the_block_scale() -> None:
    encoding = _encoding(levels=3, scale=0.01)
    values = torch.tensor([0.0, 0.004, 0.006, -0.016, 0.5, -0.5])
    positions = torch.tensor([0, 1, 2, 600, 1200, 2999])
    _, sent = encoding.encode(values, positions, torch.zeros(LENGTH), None)
    assert torch.allclose(sent, torch.tensor([0.0, 0.0, 0.01, -0.02, 0.03, -0.03]))


def test_stochastic_rounding_is_unbiased() -> None:
    encoding = _encoding(levels=1, scale=0.01)
    values = torch.full((LENGTH,), 0.0025)
    _, sent = encoding.encode(values, torch.arange(LENGTH), values, torch.Generator().manual_seed(0))
    scale = float(encoding.scales[0])
    assert set(sent.tolist()) <= {0.0, scale}
    assert abs(float(sent.mean()) - 0.0025) < 0.0005  # a quarter of them round up


@pytest.mark.parametrize(("levels", "published"), [(1, 1e-6), (1, 0.01), (1, 10.0), (3, 0.01)])
def test_next_scales_follow_the_mean_magnitude_whatever_was_published(levels: int, published: float) -> None:
    n, positions = 4, torch.arange(LENGTH)
    encoding = _encoding(levels, n, scale=published)
    updates = [torch.full((LENGTH,), 0.002 * (i + 1)) * torch.sign(torch.randn(LENGTH)) for i in range(n)]
    total = np.zeros(encoding.words(LENGTH), dtype=np.uint32)
    for x in updates:
        total += encoding.encode(x, positions, x, None)[0]
    scales = encoding.decode(total, positions, n).next_scales
    mean = 0.002 * (1 + 2 + 3 + 4) / n
    target = min(max(2 * mean / (levels + 1), published / MAX_SCALE_STEP), published * MAX_SCALE_STEP)
    assert torch.allclose(scales, torch.full_like(scales, target), rtol=1e-3)


def test_an_empty_block_cannot_drive_its_scale_to_zero() -> None:
    encoding, positions = _encoding(scale=0.01, participants=2), torch.arange(LENGTH)
    zero = torch.zeros(LENGTH)
    words = encoding.encode(zero, positions, zero, None)[0]
    scales = encoding.decode(words, positions, 1).next_scales
    assert torch.allclose(scales, torch.full_like(scales, 0.01 / MAX_SCALE_STEP))


def test_one_huge_statistic_cannot_wrap_the_sum_of_statistics() -> None:
    """A client's magnitude word is capped so that ``participants`` of them never wrap the field."""
    encoding, positions = _encoding(participants=2, scale=1e-6), torch.arange(LENGTH)
    huge = torch.full((LENGTH,), 1e3)
    words = encoding.encode(huge, positions, huge, None)[0]
    stats = words[packed_words(LENGTH, encoding.slot_bits) :].astype(np.uint64)
    assert int(stats.max()) * 2 < 2**32


def test_validate_refuses_what_no_client_could_encode() -> None:
    good = _encoding()
    bad = [
        ScaledEncoding(levels=0, block=BLOCK, scales=good.scales, participants=7),
        ScaledEncoding(levels=1, block=BLOCK, scales=good.scales[:-1], participants=7),
        ScaledEncoding(levels=1, block=BLOCK, scales=good.scales * 0, participants=7),
        ScaledEncoding(levels=1, block=BLOCK, scales=good.scales * float("nan"), participants=7),
        ScaledEncoding(levels=1, block=BLOCK, scales=good.scales.double(), participants=7),
        ScaledEncoding(levels=1, block=BLOCK, scales=good.scales, participants=1025),
        ScaledEncoding(levels=1, block=0, scales=good.scales, participants=7),
    ]
    for encoding in bad:
        with pytest.raises(ConfigError):
            encoding.validate(LENGTH)
    with pytest.raises(ValueError, match="NaN"):
        good.encode(torch.full((3,), float("nan")), torch.arange(3), torch.zeros(LENGTH), None)
    with pytest.raises(ValueError, match="words"):
        good.decode(np.zeros(3, dtype=np.uint32), torch.arange(LENGTH), 2)


def test_sums_no_honest_clients_could_produce_are_refused() -> None:
    """A client that fills its slots past the round's range (to outweigh the others) or reports a huge
    magnitude makes the sum one no honest clients could produce: decoding refuses it instead of using it.
    (Inputs are not proven in range: a forger who stays in range, or hides a carry, goes unnoticed.)"""
    encoding, positions = _encoding(levels=1, participants=4), torch.arange(LENGTH)
    honest = [encoding.encode(x, positions, x, None)[0] for x in _updates(2, 9)]
    value_words = packed_words(LENGTH, encoding.slot_bits)
    top = np.full(LENGTH, 2**encoding.slot_bits - 1)
    forged_values = np.concatenate([pack(top, encoding.slot_bits), np.zeros(encoding.scales.numel(), np.uint32)])
    forged_magnitude = np.zeros(encoding.words(LENGTH), dtype=np.uint32)
    forged_magnitude[value_words:] = 0xF0000000
    for forged in (forged_values, forged_magnitude):
        with pytest.raises(ProtocolError, match="exceed"):
            encoding.decode(honest[0] + honest[1] + forged, positions, 3)
    assert encoding.decode(honest[0] + honest[1], positions, 2).values.abs().max() > 0  # honest sums decode
