"""Round settings refuse what no round could run with, naming the setting."""

from __future__ import annotations

import pytest

from swarmnet.coordinator.config import RoundSettings
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
