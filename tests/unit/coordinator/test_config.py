"""Coordinator settings refuse what no round could run with, naming the setting; no seed on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmnet.cli.coordinator import config_from_args
from swarmnet.cli.main import build_parser
from swarmnet.coordinator.config import CoordinatorConfig, RoundSettings
from swarmnet.errors import ConfigError


@pytest.mark.parametrize("codec", ["none", "topk", "sign1bit", "int8", "topk1pct"])
def test_known_codecs_are_accepted(codec: str) -> None:
    RoundSettings(codec=codec).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"codec": "zip"}, "unknown codec 'zip'"),
        ({"topk_ratio": 0.0}, "topk_ratio"),
        ({"min_participants": 5, "clients_per_round": 4}, "exceeds clients_per_round"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"secure_aggregation": True, "min_participants": 1}, "secure aggregation"),
    ],
)
def test_impossible_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RoundSettings(**changes).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, True])
def test_a_bad_insecure_seed_is_refused(seed: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="insecure_deterministic_seed"):
        CoordinatorConfig(state_dir=tmp_path, insecure_deterministic_seed=seed).validate()  # type: ignore[arg-type]


def test_the_command_line_refuses_a_seed(tmp_path: Path) -> None:
    """No flag makes a served coordinator's noise or sampling reproducible."""
    args = build_parser().parse_args(["coordinator", "--state-dir", str(tmp_path), "--seed", "0"])
    with pytest.raises(ConfigError, match="--seed is not accepted"):
        config_from_args(args)
    plain = config_from_args(build_parser().parse_args(["coordinator", "--state-dir", str(tmp_path)]))
    assert plain.insecure_deterministic_seed is None
