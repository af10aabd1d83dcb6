"""Fixed-point encoding: round trips, sums, wrap-around and clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swarmnet.errors import ConfigError
from swarmnet.federated.secagg import FieldConfig, add_mod, dequantize, quantize, sub_mod

CONFIG = FieldConfig(clip=2.0, max_clients=16)


def _signed(values: np.ndarray) -> np.ndarray:
    return values.view(np.int32).astype(np.int64)


def _uniform(n: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1) * scale


def test_levels_leave_room_for_max_clients() -> None:
    assert CONFIG.levels == (2**31 - 1) // 16
    assert CONFIG.levels * CONFIG.max_clients <= 2**31 - 1


def test_round_trip_is_within_one_step() -> None:
    x = _uniform(10_000, seed=1)
    encoded = quantize(x, CONFIG, torch.Generator().manual_seed(2))
    assert encoded.dtype == np.uint32
    assert encoded.shape == x.shape
    # Compared in the integer domain, where one step is exactly 1 (float32 would add its own rounding).
    exact = x.numpy() / CONFIG.clip * CONFIG.levels
    assert np.all(np.abs(_signed(encoded) - exact) < 1)
    decoded = dequantize(encoded, CONFIG)
    assert decoded.dtype == torch.float32
    step = CONFIG.clip / CONFIG.levels
    assert torch.allclose(decoded.double(), x, rtol=2**-23, atol=step)


def test_sum_of_quantized_is_within_n_steps_of_quantized_sum() -> None:
    n = CONFIG.max_clients
    xs = [_uniform(5_000, seed=10 + i) for i in range(n)]
    generator = torch.Generator().manual_seed(3)
    total = np.zeros(5_000, dtype=np.uint32)
    for x in xs:
        total = add_mod(total, quantize(x, CONFIG, generator))
    exact = sum(x.numpy() for x in xs) / CONFIG.clip * CONFIG.levels
    assert np.all(np.abs(_signed(total) - exact) < n)


def test_stochastic_rounding_is_unbiased() -> None:
    coarse = FieldConfig(clip=1.0, max_clients=2**30)  # levels = 1: every value rounds to -1, 0 or 1
    assert coarse.levels == 1
    encoded = quantize(torch.full((100_000,), 0.3), coarse, torch.Generator().manual_seed(4))
    assert set(np.unique(encoded).tolist()) == {0, 1}
    assert encoded.mean() == pytest.approx(0.3, abs=0.01)


def test_negative_values_wrap_and_sums_unwrap() -> None:
    negative = quantize(torch.tensor([-0.5]), CONFIG)
    assert negative[0] > 2**31  # two's complement: a negative int32 is a large uint32
    total = add_mod(negative, quantize(torch.tensor([0.25]), CONFIG))
    assert dequantize(total, CONFIG).item() == pytest.approx(-0.25, abs=1e-6)
    assert dequantize(sub_mod(total, negative), CONFIG).item() == pytest.approx(0.25, abs=1e-6)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_max_clients_at_the_clip_do_not_overflow(sign: float) -> None:
    total = np.zeros(3, dtype=np.uint32)
    for _ in range(CONFIG.max_clients):
        total = add_mod(total, quantize(torch.full((3,), sign * CONFIG.clip), CONFIG))
    assert torch.equal(dequantize(total, CONFIG), torch.full((3,), sign * CONFIG.clip * CONFIG.max_clients))


def test_values_are_clipped() -> None:
    encoded = quantize(torch.tensor([5.0, -7.0, 2.0, -2.0]), CONFIG)
    assert _signed(encoded).tolist() == [CONFIG.levels, -CONFIG.levels, CONFIG.levels, -CONFIG.levels]
    assert dequantize(encoded, CONFIG).tolist() == [2.0, -2.0, 2.0, -2.0]


def test_shape_is_kept() -> None:
    x = _uniform(24, seed=5).reshape(2, 3, 4)
    assert dequantize(quantize(x, CONFIG), CONFIG).shape == (2, 3, 4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize(torch.tensor([0.0, bad]), CONFIG)


@pytest.mark.parametrize("config", [FieldConfig(clip=0.0), FieldConfig(clip=float("nan")), FieldConfig(max_clients=0)])
def test_bad_config_is_rejected(config: FieldConfig) -> None:
    with pytest.raises(ConfigError):
        config.validate()
    with pytest.raises(ConfigError):
        quantize(torch.zeros(1), config)


def test_modular_helpers_reject_mixed_dtypes() -> None:
    with pytest.raises(ValueError, match="uint32"):
        add_mod(np.zeros(2, dtype=np.uint32), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="shapes"):
        sub_mod(np.zeros(2, dtype=np.uint32), np.zeros(3, dtype=np.uint32))
    with pytest.raises(ValueError, match="uint32"):
        dequantize(np.zeros(2, dtype=np.int32), CONFIG)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_input_is_accepted(dtype: torch.dtype) -> None:
    x = torch.tensor([0.5, -0.25, 1.5], dtype=dtype)
    encoded = quantize(x, CONFIG, torch.Generator().manual_seed(6))
    assert np.all(np.abs(_signed(encoded) - x.double().numpy() / CONFIG.clip * CONFIG.levels) < 1)
