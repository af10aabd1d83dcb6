"""Noise and sampling randomness: from the OS by default, reproducible only in the named insecure mode."""

from __future__ import annotations

import math
import secrets

import pytest
import torch
from torch import nn

from swarmnet.federated import ClientConfig, FederatedClient
from swarmnet.federated.privacy import gaussian_noise
from swarmnet.federated.randomness import Randomness, os_gaussian
from swarmnet.federated.update_encoder import UpdateEncoder
from swarmnet.proto import federated_pb2 as pb

NOISY = pb.RoundConfig(dp_noise_std=1.0)


def test_os_noise_has_the_requested_distribution() -> None:
    raw = os_gaussian(200_001, 2.5)
    assert raw.dtype == torch.float32
    assert raw.numel() == 200_001
    noise = raw.double()
    assert abs(float(noise.mean())) < 0.03
    assert float(noise.std()) == pytest.approx(2.5, rel=0.01)
    within_one_std = float((noise.abs() < 2.5).double().mean())
    assert within_one_std == pytest.approx(math.erf(1 / math.sqrt(2)), abs=0.005)  # 0.6827: Gaussian, not uniform


def test_os_noise_is_never_repeated() -> None:
    assert not torch.equal(os_gaussian(64, 1.0), os_gaussian(64, 1.0))
    randomness = Randomness()
    assert not torch.equal(randomness.gaussian(64, 1.0, 7), randomness.gaussian(64, 1.0, 7))  # same round


@pytest.mark.parametrize(("length", "std"), [(-1, 1.0), (3, -0.5), (3, float("nan")), (True, 1.0)])
def test_os_noise_rejects_bad_input(length: int, std: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        os_gaussian(length, std)


def _client() -> FederatedClient:
    model = nn.Linear(4, 2)
    return FederatedClient(model, [], ClientConfig(address="127.0.0.1:1"), samples=1)


def test_two_default_clients_add_different_noise() -> None:
    first, second = _client(), _client()
    try:
        zeros = torch.zeros(256)
        noise = [client.encoder.privatize(zeros, NOISY) for client in (first, second)]
    finally:
        first.close()
        second.close()
    assert not torch.equal(noise[0], noise[1])
    # Neither is the stream a client seeded with 0 (the old default) would add.
    assert not torch.equal(noise[0], torch.randn(256, generator=torch.Generator().manual_seed(0)))
    assert float(noise[0].std()) == pytest.approx(1.0, rel=0.3)


def test_one_default_client_never_repeats_its_noise() -> None:
    encoder = UpdateEncoder()
    zeros = torch.zeros(64)
    assert not torch.equal(encoder.privatize(zeros, NOISY), encoder.privatize(zeros, NOISY))


def test_the_insecure_mode_repeats_exactly() -> None:
    zeros = torch.zeros(64)
    runs = [UpdateEncoder(insecure_deterministic_seed=3) for _ in range(2)]
    assert torch.equal(runs[0].privatize(zeros, NOISY), runs[1].privatize(zeros, NOISY))
    randomness = Randomness(insecure_deterministic_seed=9)
    assert torch.equal(randomness.gaussian(32, 2.0, 4), randomness.gaussian(32, 2.0, 4))
    # The coordinator's noise of round 4 is the stream coordinators seeded with 9 * 1_000_003 + 4.
    assert torch.equal(
        randomness.gaussian(32, 2.0, 4), gaussian_noise(32, 2.0, torch.Generator().manual_seed(9_000_031))
    )
    assert randomness.rng(4).random() == Randomness(insecure_deterministic_seed=9).rng(4).random()
    assert randomness.deterministic
    assert "INSECURE" in (randomness.warning() or "")


def test_the_default_mode_says_so() -> None:
    randomness = Randomness()
    assert not randomness.deterministic
    assert randomness.warning() is None
    assert isinstance(randomness.rng(1), secrets.SystemRandom)


@pytest.mark.parametrize("seed", [-1, True, 1.5])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(ValueError, match="insecure_deterministic_seed"):
        Randomness(insecure_deterministic_seed=seed)  # type: ignore[arg-type]


def test_a_torch_generator_keeps_32_bits_of_its_seed() -> None:
    """Why the noise does not come from a torch generator, even one seeded from the OS."""
    low = torch.randn(8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(low, torch.randn(8, generator=torch.Generator().manual_seed(5 + 2**32)))
