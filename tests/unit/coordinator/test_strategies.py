"""Federated strategies: the contract of every preset, exact FedAvg and Adam/Yogi values, one attacker in five."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from swarmnet.coordinator.strategies import (
    STRATEGY_NAMES,
    ClientUpdate,
    ServerState,
    StrategyConfig,
    adam_step,
    aggregate_updates,
    centered_clip,
    check_updates,
    server_step,
    sgd_step,
    strategy_config,
    trimmed_mean,
    weighted_mean,
)
from swarmnet.errors import ConfigError

N = 64


def make_updates(k: int, n: int = N, seed: int = 0) -> list[ClientUpdate]:
    gen = torch.Generator().manual_seed(seed)
    return [ClientUpdate(f"client-{i}", torch.randn(n, generator=gen), samples=10 * (i + 1)) for i in range(k)]


def run_round(
    updates: list[ClientUpdate], config: StrategyConfig, params: torch.Tensor | None = None
) -> tuple[torch.Tensor, ServerState]:
    start = torch.zeros(N) if params is None else params
    return server_step(start, aggregate_updates(updates, config), ServerState(), config)


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - reference) / torch.linalg.vector_norm(reference))


# --- contracts of every preset -----------------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_round_keeps_length_and_is_finite(name: str) -> None:
    params, state = run_round(make_updates(5), strategy_config(name))
    assert params.shape == (N,)
    assert params.dtype == torch.float32
    assert bool(torch.isfinite(params).all())
    assert state.step == 1


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_round_is_deterministic(name: str) -> None:
    config = strategy_config(name)
    first, second = run_round(make_updates(5), config), run_round(make_updates(5), config)
    assert torch.equal(first[0], second[0])
    assert first[1].tensors.keys() == second[1].tensors.keys()
    assert all(torch.equal(first[1].tensors[key], second[1].tensors[key]) for key in first[1].tensors)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_order_of_updates_does_not_matter(name: str) -> None:
    config = strategy_config(name)
    updates = make_updates(6, seed=3)
    reordered = [updates[i] for i in (4, 1, 5, 0, 3, 2)]
    assert torch.equal(run_round(updates, config)[0], run_round(reordered, config)[0])


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_single_update_is_applied_exactly_with_sgd_and_lr_1(name: str) -> None:
    config = strategy_config(name, server_optimizer="sgd", server_lr=1.0)
    params = torch.randn(N, generator=torch.Generator().manual_seed(9))
    (update,) = make_updates(1, seed=4)
    new_params, _ = run_round([update], config, params)
    assert torch.equal(new_params, params + update.delta)


def _bad_updates() -> dict[str, tuple[list[ClientUpdate], str]]:
    good = make_updates(2)
    delta = good[0].delta

    def with_delta(tensor: torch.Tensor) -> list[ClientUpdate]:
        return [good[0], dataclasses.replace(good[1], delta=tensor)]

    return {
        "empty": ([], "no client updates"),
        "wrong length": (with_delta(delta[:-1].clone()), "63 elements, expected 64"),
        "float64": (with_delta(delta.double()), "1-D float32"),
        "2-D": (with_delta(delta.reshape(8, 8)), "1-D float32"),
        "nan": (with_delta(torch.full((N,), float("nan"))), "NaN or Inf"),
        "inf": (with_delta(torch.full((N,), float("inf"))), "NaN or Inf"),
        "zero samples": ([good[0], dataclasses.replace(good[1], samples=0)], "samples must be an int > 0"),
        "negative samples": ([good[0], dataclasses.replace(good[1], samples=-3)], "samples must be an int > 0"),
        "float samples": ([good[0], dataclasses.replace(good[1], samples=2.5)], "samples must be an int > 0"),  # type: ignore[arg-type]
        "duplicate id": ([good[0], dataclasses.replace(good[1], client_id=good[0].client_id)], "more than one update"),
        "empty id": ([dataclasses.replace(good[0], client_id="")], "non-empty str"),
    }


BAD_UPDATES = _bad_updates()


@pytest.mark.parametrize("name", STRATEGY_NAMES)
@pytest.mark.parametrize("case", BAD_UPDATES.keys())
def test_invalid_updates_raise_value_error(name: str, case: str) -> None:
    updates, message = BAD_UPDATES[case]
    with pytest.raises(ValueError, match=message):
        aggregate_updates(updates, strategy_config(name))


def test_check_updates_checks_an_explicit_length() -> None:
    check_updates(make_updates(3), N)
    with pytest.raises(ValueError, match="expected 65"):
        check_updates(make_updates(3), N + 1)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_invalid_step_inputs_raise_value_error(name: str) -> None:
    config = strategy_config(name)
    params = torch.zeros(N)
    with pytest.raises(ValueError, match="aggregate has 63 elements"):
        server_step(params, torch.zeros(N - 1), ServerState(), config)
    with pytest.raises(ValueError, match="params must be a 1-D float32"):
        server_step(params.double(), torch.zeros(N), ServerState(), config)
    with pytest.raises(ValueError, match="aggregate contains NaN"):
        server_step(params, torch.full((N,), float("nan")), ServerState(), config)


def test_adaptive_state_of_the_wrong_size_is_rejected() -> None:
    config = strategy_config("fedadam")
    state = ServerState(step=1, tensors={"m": torch.zeros(N - 1), "v": torch.zeros(N - 1)})
    with pytest.raises(ValueError, match="'m' must be a float32 tensor of 64 elements"):
        server_step(torch.zeros(N), torch.zeros(N), state, config)


# --- presets and config ------------------------------------------------------------------------


def test_presets() -> None:
    expected = {
        "fedavg": ("mean", "sgd"),
        "fedadam": ("mean", "adam"),
        "fedyogi": ("mean", "yogi"),
        "trimmed_mean": ("trimmed_mean", "sgd"),
        "centered_clip": ("centered_clip", "sgd"),
    }
    assert set(STRATEGY_NAMES) == set(expected)
    for name, (aggregation, optimizer) in expected.items():
        config = strategy_config(name)
        assert (config.aggregation, config.server_optimizer) == (aggregation, optimizer)
    assert strategy_config("fedavg").server_lr == 1.0
    assert strategy_config("fedadam", server_lr=0.1, beta1=0.5) == StrategyConfig(
        server_optimizer="adam", server_lr=0.1, beta1=0.5
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aggregation": "krum"}, "unknown aggregation"),
        ({"server_optimizer": "adagrad"}, "unknown server_optimizer"),
        ({"server_lr": 0.0}, "server_lr"),
        ({"server_lr": float("inf")}, "server_lr"),
        ({"beta1": 1.0}, "beta1"),
        ({"beta2": -0.1}, "beta2"),
        ({"tau": 0.0}, "tau"),
        ({"trim_fraction": 0.6}, "trim_fraction"),
        ({"clip_tau": -1.0}, "clip_tau"),
        ({"clip_iterations": 0}, "clip_iterations"),
        ({"momentum": 0.9}, "no field"),
    ],
)
def test_invalid_config_raises_config_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        strategy_config("fedavg", **overrides)


def test_unknown_preset_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'fedprox'"):
        strategy_config("fedprox")


# --- exact values ------------------------------------------------------------------------------


def test_weighted_mean_is_exact() -> None:
    updates = [
        ClientUpdate("a", torch.tensor([1.0, 4.0, -2.0]), samples=1),
        ClientUpdate("b", torch.tensor([4.0, 1.0, 4.0]), samples=2),
    ]
    assert torch.equal(weighted_mean(updates), torch.tensor([3.0, 2.0, 2.0]))
    equal = [dataclasses.replace(u, samples=7) for u in updates]
    assert torch.equal(weighted_mean(equal), torch.tensor([2.5, 2.5, 1.0]))
    # b claims 4x a's samples: it counts for twice the (lower) median claim, 2, as in the first case.
    assert torch.equal(weighted_mean([updates[0], dataclasses.replace(updates[1], samples=4)]), weighted_mean(updates))


def test_fedavg_round_adds_the_weighted_mean() -> None:
    updates = [
        ClientUpdate("a", torch.tensor([1.0, -1.0]), samples=2),
        ClientUpdate("b", torch.tensor([4.0, 2.0]), samples=1),
    ]
    params, state = server_step(
        torch.tensor([10.0, 20.0]), weighted_mean(updates), ServerState(), strategy_config("fedavg")
    )
    assert torch.equal(params, torch.tensor([12.0, 20.0]))
    assert state == ServerState(step=1)


def test_sgd_step_scales_by_the_server_lr() -> None:
    config = StrategyConfig(server_lr=0.5)
    params, _ = sgd_step(torch.tensor([1.0, 1.0]), torch.tensor([2.0, -4.0]), ServerState(), config)
    assert torch.equal(params, torch.tensor([2.0, -1.0]))


def _hand_adaptive(yogi: bool) -> list[list[float]]:
    """Two server steps worked out with plain floats, one coordinate at a time."""
    lr, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    x, aggregates = [0.5, -1.0], ([1.0, -2.0], [0.5, 3.0])
    m, v = [0.0, 0.0], [tau**2, tau**2]
    history = []
    for d in aggregates:
        for i in range(2):
            m[i] = b1 * m[i] + (1 - b1) * d[i]
            if yogi:
                diff = v[i] - d[i] ** 2
                sign = (diff > 0) - (diff < 0)
                v[i] = v[i] - (1 - b2) * d[i] ** 2 * sign
            else:
                v[i] = b2 * v[i] + (1 - b2) * d[i] ** 2
            x[i] = x[i] + lr * m[i] / (v[i] ** 0.5 + tau)
        history.append(list(x))
    return history


@pytest.mark.parametrize("optimizer", ["adam", "yogi"])
def test_adaptive_steps_match_a_hand_computation(optimizer: str) -> None:
    config = strategy_config(f"fed{optimizer}", server_lr=0.1)
    params, state = torch.tensor([0.5, -1.0]), ServerState()
    expected = _hand_adaptive(yogi=optimizer == "yogi")
    for aggregate, want in zip((torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])), expected, strict=True):
        params, state = server_step(params, aggregate, state, config)
        torch.testing.assert_close(params, torch.tensor(want), rtol=1e-6, atol=1e-6)
    assert state.step == 2
    assert set(state.tensors) == {"m", "v"}


def test_first_adam_step_starts_from_tau_squared() -> None:
    config = StrategyConfig(server_optimizer="adam", server_lr=1.0, tau=0.5)
    params, state = adam_step(torch.zeros(1), torch.tensor([2.0]), ServerState(), config)
    m, v = 0.1 * 2.0, 0.99 * 0.25 + 0.01 * 4.0
    torch.testing.assert_close(state.tensors["m"], torch.tensor([m]))
    torch.testing.assert_close(state.tensors["v"], torch.tensor([v]))
    torch.testing.assert_close(params, torch.tensor([m / (v**0.5 + 0.5)]))


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_server_state_round_trips_through_safetensors(name: str, tmp_path: Path) -> None:
    config = strategy_config(name)
    params, state = run_round(make_updates(3), config)
    path = tmp_path / "state.safetensors"
    save_file(dict(state.tensors), path)
    restored = ServerState(step=state.step, tensors=load_file(path))
    aggregate = aggregate_updates(make_updates(3, seed=1), config)
    expected, _ = server_step(params, aggregate, state, config)
    assert torch.equal(server_step(params, aggregate, restored, config)[0], expected)


# --- one Byzantine client in five --------------------------------------------------------------


def _scaled(delta: torch.Tensor) -> torch.Tensor:
    return delta * 100


def _sign_flipped(delta: torch.Tensor) -> torch.Tensor:
    return -delta


ATTACKS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"x100": _scaled, "sign-flip": _sign_flipped}


def _byzantine_round(attack: Callable[[torch.Tensor], torch.Tensor]) -> tuple[list[ClientUpdate], torch.Tensor]:
    """Four honest clients near a common direction and one attacker; returns the updates and the honest mean."""
    gen = torch.Generator().manual_seed(11)
    direction = torch.randn(1000, generator=gen)
    honest = [
        ClientUpdate(f"honest-{i}", direction + 0.05 * torch.randn(1000, generator=gen), samples=20 + 10 * i)
        for i in range(4)
    ]
    attacker = ClientUpdate("attacker", attack(direction + 0.05 * torch.randn(1000, generator=gen)), samples=40)
    return [*honest, attacker], weighted_mean(honest)


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_robust_rules_resist_one_attacker_in_five(attack: Callable[[torch.Tensor], torch.Tensor]) -> None:
    updates, honest_mean = _byzantine_round(attack)
    assert relative_error(weighted_mean(updates), honest_mean) > 0.1
    for rule in (trimmed_mean, centered_clip):
        assert relative_error(rule(updates, StrategyConfig()), honest_mean) < 0.1, rule.__name__


@pytest.mark.parametrize("name", ["trimmed_mean", "centered_clip"])
def test_robust_presets_resist_one_attacker_in_five(name: str) -> None:
    updates, honest_mean = _byzantine_round(_scaled)
    params, _ = run_round(updates, strategy_config(name), torch.zeros(1000))
    assert relative_error(params, honest_mean) < 0.1
