"""No claimed sample count buys a client more than twice the round's median weight, in any strategy."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from swarmnet.coordinator.strategies import (
    STRATEGY_NAMES,
    ClientUpdate,
    ServerState,
    aggregate_updates,
    samples_cap,
    secure_samples_cap,
    server_step,
    strategy_config,
    weighted_mean,
)

N = 32


@pytest.mark.parametrize(
    ("claims", "cap"),
    [([10, 10, 10, 10**12], 20), ([16, 32, 48], 64), ([5], 10), ([], 1), ([0, 0], 1), ([7, 10**12], 14)],
)
def test_the_cap_is_twice_the_lower_median(claims: list[int], cap: int) -> None:
    assert samples_cap(claims) == cap


@pytest.mark.parametrize(
    "sizes",
    [
        [131, 191, 215, 224, 235, 241, 260, 423],  # the federated experiment's shards, seeds 0, 1, 2
        [67, 128, 242, 251, 254, 269, 293, 416],
        [102, 109, 182, 267, 287, 288, 341, 344],
    ],
)
def test_ordinary_skew_keeps_its_exact_weights(sizes: list[int]) -> None:
    assert samples_cap(sizes) >= max(sizes)


@pytest.mark.parametrize(
    ("claims", "cap"), [([16, 16, 10**12], 32), ([131, 191, 215, 224, 235, 241, 260, 423], 423), ([], 1), ([0], 1)]
)
def test_a_secure_rounds_cap_is_the_largest_claim_within_the_cap(claims: list[int], cap: int) -> None:
    assert secure_samples_cap(claims) == cap


def _round(liar_claim: int) -> list[ClientUpdate]:
    """Four honest clients with spread deltas and one liar pulling every coordinate to +1."""
    gen = torch.Generator().manual_seed(5)
    honest = [ClientUpdate(f"honest-{i}", 0.1 * torch.randn(N, generator=gen), samples=10) for i in range(4)]
    return [*honest, ClientUpdate("liar", torch.ones(N), samples=liar_claim)]


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_a_claim_above_the_cap_buys_nothing(name: str) -> None:
    config = strategy_config(name)
    results = []
    for claim in (20, 10**12):  # 20: twice the median claim, the most any client counts for
        aggregate = aggregate_updates(_round(claim), config)
        results.append(server_step(torch.zeros(N), aggregate, ServerState(), config)[0])
    assert torch.equal(results[0], results[1])


def test_the_liars_share_of_the_mean_is_bounded() -> None:
    updates = [dataclasses.replace(u, delta=torch.zeros(N)) for u in _round(10**12)[:4]]
    updates.append(ClientUpdate("liar", torch.ones(N), samples=10**12))
    share = weighted_mean(updates)
    assert torch.allclose(share, torch.full((N,), 2 / (4 + 2)))  # 20 / (40 + 20)
