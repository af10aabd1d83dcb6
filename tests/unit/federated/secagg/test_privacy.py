"""What the coordinator sees reveals nothing about a single client's update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swarmnet.errors import ProtocolError
from swarmnet.federated.secagg import FieldConfig, RevealedShare, ShareKind, quantize
from swarmnet.federated.secagg.field import U32Array
from tests.unit.federated.secagg.simulation import make_clients, run_round

N, THRESHOLD, LENGTH = 5, 4, 1 << 16
CONFIG = FieldConfig(clip=1.0, max_clients=N)


def _looks_uniform(values: U32Array) -> bool:
    """Bit frequencies and a chi-square over the top byte, both at about 5 sigma."""
    bits = (values[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    frequencies = bits.mean(axis=0)
    bits_ok = bool(np.all(np.abs(frequencies - 0.5) < 5 * 0.5 / np.sqrt(len(values))))
    counts = np.bincount(values >> 24, minlength=256)
    expected = len(values) / 256
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    return bits_ok and chi_square < 350  # 255 degrees of freedom: p < 1e-4 beyond ~340


def _masked_input(update: torch.Tensor, seed: int) -> tuple[U32Array, U32Array]:
    """(quantized input, masked vector) of one client in a seeded round."""
    clients = make_clients(N, THRESHOLD, seed=seed)
    inputs = {c.client_id: quantize(torch.zeros(LENGTH), CONFIG) for c in clients}
    target = clients[0].client_id
    inputs[target] = quantize(update, CONFIG, torch.Generator().manual_seed(seed))
    return inputs[target], run_round(clients, inputs).masked[target]


@pytest.mark.parametrize(
    "update",
    [torch.zeros(LENGTH), torch.full((LENGTH,), CONFIG.clip), torch.linspace(-1, 1, LENGTH)],
    ids=["zeros", "all-at-clip", "ramp"],
)
def test_a_masked_vector_is_indistinguishable_from_uniform(update: torch.Tensor) -> None:
    plain, masked = _masked_input(update, seed=21)
    assert not _looks_uniform(plain)  # the test has power: the inputs themselves fail it
    assert _looks_uniform(masked)
    assert np.count_nonzero(masked - plain == 0) == 0


def test_very_different_inputs_give_unrelated_masked_vectors() -> None:
    low, masked_low = _masked_input(torch.full((LENGTH,), -CONFIG.clip), seed=22)
    high, masked_high = _masked_input(torch.full((LENGTH,), CONFIG.clip), seed=23)
    assert _looks_uniform(masked_low)
    assert _looks_uniform(masked_high)
    # Nor does the difference of what the coordinator saw relate to the difference of the inputs.
    assert _looks_uniform(masked_high - masked_low - (high - low))


def test_a_partial_sum_of_masked_vectors_stays_masked() -> None:
    clients = make_clients(N, THRESHOLD, seed=24)
    generator = torch.Generator().manual_seed(24)
    inputs = {c.client_id: quantize(torch.full((LENGTH,), 0.5), CONFIG, generator) for c in clients}
    masked = run_round(clients, inputs).masked
    partial = np.zeros(LENGTH, dtype=np.uint32)
    for client_id in sorted(masked)[:-1]:
        partial += masked[client_id]
    assert _looks_uniform(partial)


def test_a_client_refuses_to_reveal_both_secrets_of_one_client() -> None:
    clients = make_clients(N, THRESHOLD, seed=25)
    inputs = {c.client_id: quantize(torch.zeros(8), CONFIG) for c in clients}
    result = run_round(clients, inputs, drop_after_masking={c.client_id for c in clients})
    helper, victim = clients[0], clients[1].client_id
    everyone = sorted(result.masked)
    first = helper.unmask(everyone, [])
    assert RevealedShare.from_bytes(first[victim]).kind is ShareKind.SEED
    # The coordinator now claims the victim dropped out, to get its mask-key share too.
    with pytest.raises(ProtocolError, match=f"refusing to reveal both secrets of {victim}"):
        helper.unmask([c for c in everyone if c != victim], [victim])


def test_a_client_refuses_the_reverse_order_too() -> None:
    clients = make_clients(N, THRESHOLD, seed=26)
    inputs = {c.client_id: quantize(torch.zeros(8), CONFIG) for c in clients}
    victim = clients[1].client_id
    result = run_round(clients, inputs, drop_after_sharing={victim}, drop_after_masking={c.client_id for c in clients})
    helper = clients[0]
    survivors = sorted(result.masked)
    first = helper.unmask(survivors, [victim])
    assert RevealedShare.from_bytes(first[victim]).kind is ShareKind.MASK_KEY
    with pytest.raises(ProtocolError, match=f"refusing to reveal both secrets of {victim}"):
        helper.unmask([*survivors, victim], [])
