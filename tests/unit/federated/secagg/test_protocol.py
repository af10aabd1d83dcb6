"""Whole rounds in memory: the unmasked sum is exact, with and without dropouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from swarmnet.coordinator.secagg_unmask import threshold_for
from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.secagg import FieldConfig, RevealedShare, ShareKind, dequantize, quantize
from swarmnet.federated.secagg.field import U32Array
from tests.unit.federated.secagg.simulation import (
    Round,
    aggregate,
    field_sum,
    make_clients,
    random_inputs,
    run_round,
)

LENGTH = 2_000


@pytest.mark.parametrize(("n", "threshold"), [(2, 2), (3, 2), (5, 4), (6, 4), (16, 11), (64, 43)])
def test_threshold_for(n: int, threshold: int) -> None:
    assert threshold_for(n) == threshold


@pytest.mark.parametrize(("n", "fraction"), [(1, 0.0), (4, 0.5), (10, 0.6), (5, 1.0), (5, -0.1)])
def test_threshold_for_rejects_non_majorities(n: int, fraction: float) -> None:
    with pytest.raises(ConfigError):
        threshold_for(n, fraction)


@pytest.mark.parametrize("n", [5, 16])
def test_no_dropouts_give_the_exact_sum(n: int) -> None:
    threshold = threshold_for(n)
    clients = make_clients(n, threshold)
    inputs = random_inputs(clients, LENGTH)
    result = run_round(clients, inputs)
    assert np.array_equal(aggregate(result, threshold, LENGTH), field_sum(inputs.values()))


@pytest.mark.parametrize("n", [5, 16])
def test_dropouts_after_sharing_give_the_exact_sum_of_survivors(n: int) -> None:
    threshold = threshold_for(n)
    clients = make_clients(n, threshold, seed=1)
    inputs = random_inputs(clients, LENGTH, seed=1)
    gone = {c.client_id for c in clients[: n - threshold]}  # floor(n / 3) of them
    result = run_round(clients, inputs, drop_after_sharing=gone)
    assert len(result.dropped) == n // 3
    survivors = [v for k, v in inputs.items() if k not in gone]
    assert np.array_equal(aggregate(result, threshold, LENGTH), field_sum(survivors))


@pytest.mark.parametrize("n", [5, 16])
def test_dropouts_after_masking_still_give_the_exact_sum(n: int) -> None:
    threshold = threshold_for(n)
    clients = make_clients(n, threshold, seed=2)
    inputs = random_inputs(clients, LENGTH, seed=2)
    silent = {c.client_id for c in clients[-(n - threshold) :]}
    result = run_round(clients, inputs, drop_after_masking=silent)
    assert len(result.responses) == threshold
    # They submitted, so their inputs count, though they did not help unmask.
    assert np.array_equal(aggregate(result, threshold, LENGTH), field_sum(inputs.values()))


def test_dropouts_at_every_stage_together() -> None:
    n, threshold = 16, 11
    clients = make_clients(n, threshold, seed=3)
    inputs = random_inputs(clients, LENGTH, seed=3)
    ids = [c.client_id for c in clients]
    result = run_round(
        clients,
        inputs,
        drop_before_sharing={ids[0]},
        drop_after_sharing={ids[1], ids[2]},
        drop_after_masking={ids[3], ids[4]},
    )
    assert (len(result.senders), len(result.masked), len(result.responses)) == (15, 13, threshold)
    counted = [v for k, v in inputs.items() if k in result.masked]
    assert np.array_equal(aggregate(result, threshold, LENGTH), field_sum(counted))


def test_too_many_dropouts_before_masking_stop_the_round() -> None:
    n, threshold = 5, 4
    clients = make_clients(n, threshold, seed=4)
    inputs = random_inputs(clients, LENGTH, seed=4)
    gone = {c.client_id for c in clients[:2]}
    with pytest.raises(ProtocolError, match="fewer than the threshold"):
        run_round(clients, inputs, drop_after_sharing=gone)  # the clients refuse to unmask
    result = run_round(
        make_clients(n, threshold, seed=4), inputs, drop_after_sharing=gone, drop_after_masking=set(inputs)
    )
    with pytest.raises(ProtocolError, match="only 3 clients submitted"):
        aggregate(result, threshold, LENGTH)


def test_too_many_silent_clients_stop_the_round() -> None:
    n, threshold = 16, 11
    clients = make_clients(n, threshold, seed=5)
    inputs = random_inputs(clients, LENGTH, seed=5)
    result = run_round(clients, inputs, drop_after_masking={c.client_id for c in clients[:6]})
    with pytest.raises(ProtocolError, match="only 10 valid unmask responses"):
        aggregate(result, threshold, LENGTH)


def test_float_updates_average_through_the_protocol() -> None:
    n, threshold = 5, 4
    config = FieldConfig(clip=1.0, max_clients=n)
    clients = make_clients(n, threshold, seed=6)
    generator = torch.Generator().manual_seed(6)
    updates = {c.client_id: torch.rand(LENGTH, generator=generator) * 2 - 1 for c in clients}
    inputs = {k: quantize(v, config, generator) for k, v in updates.items()}
    total = aggregate(run_round(clients, inputs), threshold, LENGTH)
    mean = dequantize(total, config) / n
    expected = torch.stack(list(updates.values())).mean(dim=0)
    assert torch.allclose(mean, expected, atol=2 * config.clip / config.levels)


def test_realistic_size_is_exact() -> None:
    # 16 clients, 100k parameters: the size the performance budget is about.
    n, length = 16, 100_000
    threshold = threshold_for(n)
    clients = make_clients(n, threshold, seed=7)
    inputs = random_inputs(clients, length, seed=7)
    ids = [c.client_id for c in clients]
    result = run_round(clients, inputs, drop_after_sharing=set(ids[:3]), drop_after_masking=set(ids[3:5]))
    counted = [v for k, v in inputs.items() if k in result.masked]
    assert np.array_equal(aggregate(result, threshold, length), field_sum(counted))


def _round_with_spare_responders(seed: int) -> tuple[Round, dict[str, U32Array], int]:
    """Six clients, one dropped after sharing, five responders for a threshold of four."""
    n, threshold = 6, 4
    clients = make_clients(n, threshold, seed=seed)
    inputs = random_inputs(clients, LENGTH, seed=seed)
    result = run_round(clients, inputs, drop_after_sharing={clients[0].client_id})
    return result, inputs, threshold


def test_a_garbage_responder_is_ignored_when_enough_remain() -> None:
    result, inputs, threshold = _round_with_spare_responders(8)
    bad = sorted(result.responses)[0]
    result.responses[bad] = dict.fromkeys(result.responses[bad], b"garbage")
    counted = [v for k, v in inputs.items() if k in result.masked]
    assert np.array_equal(aggregate(result, threshold, LENGTH), field_sum(counted))


def test_garbage_responders_are_named_when_too_few_remain() -> None:
    result, _, threshold = _round_with_spare_responders(9)
    bad = sorted(result.responses)[:2]
    result.responses[bad[0]] = {}
    first = next(iter(result.responses[bad[1]]))
    result.responses[bad[1]] = {**result.responses[bad[1]], first: b"\x00" * 71}
    with pytest.raises(ProtocolError, match=f"rejected {bad[0]}.*rejected {bad[1]}"):
        aggregate(result, threshold, LENGTH)


def test_a_wrong_kind_of_share_disqualifies_the_responder() -> None:
    result, _, threshold = _round_with_spare_responders(10)
    liar = sorted(result.responses)[0]
    about = result.dropped[0]
    value = RevealedShare.from_bytes(result.responses[liar][about]).value
    result.responses[liar][about] = RevealedShare(ShareKind.SEED, value).to_bytes()
    honest = [r for r in sorted(result.responses) if r != liar][: threshold - 1]
    result.responses = {r: result.responses[r] for r in [liar, *honest]}
    with pytest.raises(ProtocolError, match=f"rejected {liar}: .*SEED share of {about}"):
        aggregate(result, threshold, LENGTH)


@pytest.mark.parametrize("target", ["survivor", "dropped"])
def test_a_well_formed_but_forged_share_is_detected(target: str) -> None:
    result, _, threshold = _round_with_spare_responders(11)
    liar = sorted(result.responses)[0]
    about = sorted(result.masked)[0] if target == "survivor" else result.dropped[0]
    share = RevealedShare.from_bytes(result.responses[liar][about])
    result.responses[liar][about] = dataclasses.replace(share, value=share.value + 1).to_bytes()
    with pytest.raises(ProtocolError, match=f"cannot reconstruct the secret of {about}: inconsistent"):
        aggregate(result, threshold, LENGTH)


def test_a_forged_share_without_redundancy_is_caught_by_the_advertised_key() -> None:
    result, _, threshold = _round_with_spare_responders(12)
    about = result.dropped[0]
    kept = sorted(result.responses)[:threshold]
    result.responses = {r: result.responses[r] for r in kept}
    share = RevealedShare.from_bytes(result.responses[kept[0]][about])
    result.responses[kept[0]][about] = dataclasses.replace(share, value=share.value + 1).to_bytes()
    with pytest.raises(ProtocolError, match=f"{about}"):
        aggregate(result, threshold, LENGTH)


def test_bad_masked_vectors_are_named() -> None:
    result, _, threshold = _round_with_spare_responders(13)
    victim = sorted(result.masked)[0]
    result.masked[victim] = result.masked[victim][:-1]
    with pytest.raises(ProtocolError, match=f"masked input of {victim}"):
        aggregate(result, threshold, LENGTH)


def test_inconsistent_client_sets_are_rejected() -> None:
    result, _, threshold = _round_with_spare_responders(14)
    stray = result.dropped[0]
    with pytest.raises(ProtocolError, match="without having shared keys"):
        aggregate(dataclasses.replace(result, senders=result.senders - {stray, *result.masked}), threshold, LENGTH)
    with pytest.raises(ProtocolError, match="not in the roster"):
        aggregate(dataclasses.replace(result, senders=result.senders | {"nobody"}), threshold, LENGTH)
