"""Differential privacy: clipping, noise, and the RDP accountant against published TF-Privacy values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from swarmnet.errors import ConfigError
from swarmnet.federated.privacy import (
    DEFAULT_ORDERS,
    PrivacyAccountant,
    PrivacyConfig,
    clip_update,
    gaussian_noise,
    rdp_to_epsilon,
    subsampled_gaussian_rdp,
)

# --- config ------------------------------------------------------------------------------------


def test_default_config_is_valid() -> None:
    PrivacyConfig().validate()
    PrivacyConfig(noise_multiplier=0.0, placement="distributed").validate()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (PrivacyConfig(clip_norm=0.0), "clip_norm"),
        (PrivacyConfig(clip_norm=float("inf")), "clip_norm"),
        (PrivacyConfig(noise_multiplier=-1.0), "noise_multiplier"),
        (PrivacyConfig(delta=0.0), "delta"),
        (PrivacyConfig(delta=1.0), "delta"),
        (PrivacyConfig(placement="local"), "placement"),  # type: ignore[arg-type]
    ],
)
def test_invalid_config_raises_config_error(config: PrivacyConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_distributed_noise_adds_up_to_the_central_noise() -> None:
    central = PrivacyConfig(clip_norm=2.0, noise_multiplier=1.5)
    distributed = PrivacyConfig(clip_norm=2.0, noise_multiplier=1.5, placement="distributed")
    assert central.noise_std(clients=16) == 3.0
    assert distributed.noise_std(clients=16) == 0.75
    assert 16 * distributed.noise_std(clients=16) ** 2 == pytest.approx(central.noise_std(clients=16) ** 2)
    with pytest.raises(ValueError, match="clients must be an int >= 1"):
        distributed.noise_std(clients=0)


def test_distributed_noise_sums_to_the_central_std() -> None:
    config = PrivacyConfig(noise_multiplier=2.0, clip_norm=0.5, placement="distributed")
    clients, gen = 8, torch.Generator().manual_seed(0)
    total = sum(gaussian_noise(20_000, config.noise_std(clients), gen) for _ in range(clients))
    assert isinstance(total, torch.Tensor)
    assert float(total.std()) == pytest.approx(1.0, rel=0.03)


# --- clipping and noise ------------------------------------------------------------------------


def test_clip_scales_a_long_update_to_the_clip_norm() -> None:
    delta = torch.tensor([3.0, 4.0])
    clipped, norm = clip_update(delta, 1.0)
    assert norm == 5.0
    torch.testing.assert_close(clipped, torch.tensor([0.6, 0.8]))
    assert torch.equal(delta, torch.tensor([3.0, 4.0]))  # the input is left alone


def test_clip_copies_a_short_update_unchanged() -> None:
    delta = torch.tensor([0.3, -0.4])
    clipped, norm = clip_update(delta, 1.0)
    assert norm == pytest.approx(0.5)
    assert torch.equal(clipped, delta)
    assert clipped.data_ptr() != delta.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_clipped_norm_is_at_most_the_clip_norm(dtype: torch.dtype) -> None:
    delta = (torch.randn(10_000, generator=torch.Generator().manual_seed(1)) * 7).to(dtype)
    clipped, norm = clip_update(delta, 0.25)
    assert clipped.dtype == dtype
    assert norm > 0.25
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-6
    assert float(torch.linalg.vector_norm(clipped.double())) <= 0.25 * (1 + tolerance)


def test_clip_does_not_overflow_in_float32() -> None:
    clipped, norm = clip_update(torch.full((4,), 3e38), 1.0)
    assert math.isfinite(norm)
    torch.testing.assert_close(clipped, torch.full((4,), 0.5))


@pytest.mark.parametrize(
    ("delta", "clip_norm", "message"),
    [
        (torch.tensor([1.0, float("nan")]), 1.0, "NaN or Inf"),
        (torch.tensor([1, 2]), 1.0, "floating-point"),
        (torch.tensor([1.0]), 0.0, "clip_norm"),
        (torch.tensor([1.0]), float("nan"), "clip_norm"),
    ],
)
def test_clip_rejects_bad_input(delta: torch.Tensor, clip_norm: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clip_update(delta, clip_norm)


def test_gaussian_noise_has_the_requested_std_and_is_seeded() -> None:
    noise = gaussian_noise(100_000, 3.0, torch.Generator().manual_seed(5))
    assert noise.shape == (100_000,)
    assert noise.dtype == torch.float32
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(noise.std()) == pytest.approx(3.0, rel=0.02)
    assert torch.equal(noise, gaussian_noise(100_000, 3.0, torch.Generator().manual_seed(5)))
    assert torch.equal(gaussian_noise(3, 0.0, torch.Generator()), torch.zeros(3))


@pytest.mark.parametrize(("length", "std"), [(-1, 1.0), (3, -1.0), (3, float("inf"))])
def test_gaussian_noise_rejects_bad_input(length: int, std: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        gaussian_noise(length, std, torch.Generator())


# --- RDP of one round --------------------------------------------------------------------------


@pytest.mark.parametrize("z", [0.5, 1.0, 3.7])
@pytest.mark.parametrize("order", [2, 7, 64, 256])
def test_full_batch_rdp_is_the_gaussian_mechanism(z: float, order: int) -> None:
    assert subsampled_gaussian_rdp(1.0, z, order) == order / (2 * z**2)


def test_subsampled_rdp_matches_tf_privacy() -> None:
    # tensorflow/privacy rdp_accountant_test.py: compute_rdp(q, z, steps, orders).
    assert 10 * subsampled_gaussian_rdp(0.1, 2.0, 5) == pytest.approx(0.07737, abs=1e-5)
    got = [50 * subsampled_gaussian_rdp(0.01, 2.5, order) for order in (5, 50, 100)]
    assert got == pytest.approx([0.00218075, 0.023846, 167.416307], abs=1e-5)


def test_subsampled_rdp_agrees_with_a_direct_sum_for_small_orders() -> None:
    q, z = 0.3, 1.3
    for order in (2, 3, 4):
        a = sum(
            math.comb(order, k) * (1 - q) ** (order - k) * q**k * math.exp((k * k - k) / (2 * z * z))
            for k in range(order + 1)
        )
        assert subsampled_gaussian_rdp(q, z, order) == pytest.approx(math.log(a) / (order - 1), rel=1e-12)


def test_edge_cases_of_one_round() -> None:
    assert subsampled_gaussian_rdp(0.0, 1.0, 8) == 0.0
    assert subsampled_gaussian_rdp(0.0, 0.0, 8) == 0.0
    assert subsampled_gaussian_rdp(0.5, 0.0, 8) == math.inf
    assert subsampled_gaussian_rdp(1e-9, 0.1, 256) >= 0.0
    with pytest.raises(ValueError, match="order must be an int >= 2"):
        subsampled_gaussian_rdp(0.5, 1.0, 1)
    with pytest.raises(ValueError, match="sample_rate"):
        subsampled_gaussian_rdp(1.5, 1.0, 2)


# --- conversion to (epsilon, delta) ------------------------------------------------------------


def test_standard_conversion_matches_tf_privacy() -> None:
    # tensorflow/privacy rdp_accountant_test.py (2018): q = 0.01, z = 4, 10000 steps, orders 2..32.
    accountant = PrivacyAccountant(orders=range(2, 33))
    accountant.step(noise_multiplier=4.0, sample_rate=0.01, steps=10_000)
    eps, order = rdp_to_epsilon(accountant.orders, accountant.rdp(), 1e-5, tight=False)
    assert eps == pytest.approx(1.258575, abs=1e-5)
    assert order == 20
    assert accountant.epsilon(1e-5) < eps  # the tight conversion is never worse


def test_tight_conversion_matches_tf_privacy() -> None:
    # tensorflow/privacy rdp_accountant_test.py: a constant RDP of 1.1 over orders 2..32.
    eps, order = rdp_to_epsilon(range(2, 33), [1.1] * 31, 1e-5)
    assert eps == pytest.approx(1.32783806176, abs=1e-9)
    assert order == 32


@pytest.mark.parametrize(
    ("noise_multiplier", "epochs", "published"),
    [(1.12, 60, 2.92), (0.6, 30, 9.74), (1.2, 10, 1.20)],
)
def test_mnist_dpsgd_tutorial_epsilons(noise_multiplier: float, epochs: int, published: float) -> None:
    # tensorflow/privacy tutorials/README.md: MNIST, 60000 examples, batches of 256, delta 1e-5;
    # computed with fractional orders and the standard conversion.
    accountant = PrivacyAccountant()
    accountant.step(noise_multiplier, sample_rate=256 / 60_000, steps=epochs * 60_000 // 256)
    assert accountant.epsilon(1e-5, tight=False) == pytest.approx(published, rel=0.1)
    assert accountant.epsilon(1e-5) < accountant.epsilon(1e-5, tight=False)


def test_epsilon_grows_with_steps_and_shrinks_with_noise() -> None:
    def epsilon(z: float, steps: int) -> float:
        accountant = PrivacyAccountant()
        accountant.step(z, 0.01, steps)
        return accountant.epsilon(1e-5)

    by_steps = [epsilon(1.0, steps) for steps in (1, 10, 100, 1000, 10_000)]
    assert by_steps == sorted(by_steps)
    assert len(set(by_steps)) == len(by_steps)
    by_noise = [epsilon(z, 1000) for z in (0.5, 0.8, 1.0, 2.0, 5.0)]
    assert by_noise == sorted(by_noise, reverse=True)
    assert len(set(by_noise)) == len(by_noise)


def test_steps_compose_additively() -> None:
    one_call, many_calls = PrivacyAccountant(), PrivacyAccountant()
    one_call.step(1.1, 0.02, steps=50)
    for _ in range(50):
        many_calls.step(1.1, 0.02)
    assert many_calls.steps == one_call.steps == 50
    assert many_calls.rdp() == pytest.approx(one_call.rdp(), rel=1e-12)
    mixed = PrivacyAccountant()
    mixed.step(1.1, 0.02, steps=50)
    mixed.step(2.0, 0.1, steps=10)
    assert mixed.epsilon(1e-5) > one_call.epsilon(1e-5)


def test_fresh_and_noiseless_accountants() -> None:
    assert PrivacyAccountant().epsilon(1e-5) == 0.0
    noiseless = PrivacyAccountant()
    noiseless.step(0.0, 0.1)
    assert noiseless.epsilon(1e-5) == math.inf


@pytest.mark.parametrize(
    ("z", "q", "steps", "message"),
    [(-1.0, 0.1, 1, "noise_multiplier"), (1.0, -0.1, 1, "sample_rate"), (1.0, 0.1, 0, "steps")],
)
def test_step_rejects_bad_input(z: float, q: float, steps: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrivacyAccountant().step(z, q, steps)


@pytest.mark.parametrize("orders", [[], [1, 2], [2, 2], [2.5]])
def test_bad_orders_are_rejected(orders: list[int]) -> None:
    with pytest.raises(ValueError, match="orders"):
        PrivacyAccountant(orders=orders)


@pytest.mark.parametrize(
    ("orders", "rdp", "message"),
    [([2, 3], [0.1], "one RDP value per order"), ([1], [0.1], "orders"), ([2], [float("nan")], "RDP values")],
)
def test_conversion_rejects_bad_curves(orders: list[int], rdp: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rdp_to_epsilon(orders, rdp, 1e-5)


@pytest.mark.parametrize("delta", [0.0, 1.0, float("nan")])
def test_bad_delta_is_rejected(delta: float) -> None:
    with pytest.raises(ValueError, match="delta"):
        PrivacyAccountant().epsilon(delta)


# --- persistence -------------------------------------------------------------------------------


def test_state_round_trips_through_safetensors(tmp_path: Path) -> None:
    accountant = PrivacyAccountant()
    accountant.step(1.1, 0.01, steps=300)
    path = tmp_path / "accountant.safetensors"
    save_file(accountant.state_dict(), path)
    restored = PrivacyAccountant(orders=[2, 3])
    restored.load_state_dict(load_file(path))
    assert restored.orders == DEFAULT_ORDERS
    assert restored.steps == 300
    assert restored.rdp() == accountant.rdp()
    accountant.step(1.1, 0.01)
    restored.step(1.1, 0.01)
    assert restored.epsilon(1e-5) == accountant.epsilon(1e-5)


def test_state_dict_is_a_copy() -> None:
    accountant = PrivacyAccountant()
    state = accountant.state_dict()
    state["rdp"].fill_(5.0)
    assert accountant.rdp() == (0.0,) * len(DEFAULT_ORDERS)


@pytest.mark.parametrize(
    "change",
    [
        {"rdp": torch.tensor([1.0])},
        {"rdp": torch.tensor([-1.0] * len(DEFAULT_ORDERS), dtype=torch.float64)},
        {"orders": torch.tensor([1.0, 2.0])},
        {"steps": torch.tensor([-1])},
        {"extra": torch.tensor([1])},
    ],
)
def test_malformed_state_is_rejected_without_changes(change: dict[str, torch.Tensor]) -> None:
    accountant = PrivacyAccountant()
    accountant.step(1.0, 0.1)
    before = accountant.rdp()
    with pytest.raises(ValueError, match="accountant state"):
        accountant.load_state_dict({**accountant.state_dict(), **change})
    assert accountant.rdp() == before
    assert accountant.steps == 1
