"""The byte-level GPT: presets, causality, learning, seeded generation."""

from __future__ import annotations

import pytest
import torch

from swarmnet.errors import ConfigError
from swarmnet.models import GPT, PRESETS, GPTConfig, preset


def test_debug_preset_has_the_calibrated_size() -> None:
    assert GPT(preset("debug")).num_parameters() == 842_496
    assert set(PRESETS) >= {"tiny", "debug", "demo"}
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ConfigError):
        GPT(GPTConfig(width=30, heads=4))


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = GPT(preset("tiny")).eval()
    tokens = torch.randint(0, 256, (1, 20))
    changed = tokens.clone()
    changed[0, 15] = (changed[0, 15] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[0, :15], b[0, :15])
    assert not torch.allclose(a[0, 15:], b[0, 15:])


def test_it_learns_a_repeated_pattern_and_generates_deterministically() -> None:
    torch.manual_seed(0)
    model = GPT(preset("tiny"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.tensor([list(b"abcdefgh" * 4)])
    first = float(model.loss(data[:, :-1], data[:, 1:]).detach())
    for _ in range(60):
        loss = model.loss(data[:, :-1], data[:, 1:])
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert float(loss.detach()) < first / 4
    assert model.generate(b"abc", 5, seed=1) == model.generate(b"abc", 5, seed=1)
    with pytest.raises(ValueError, match="longer than the context"):
        model(torch.zeros(1, 64, dtype=torch.long))
