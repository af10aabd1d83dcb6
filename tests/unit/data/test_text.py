"""Corpora from installed packages, splits, shards and deterministic batches."""

from __future__ import annotations

import pytest
import torch

from swarmnet.data import DataConfig, TextData, corpus_names, load_corpus, register_corpus
from swarmnet.errors import ConfigError


def test_kjv_ships_in_its_package() -> None:
    text = load_corpus("kjv")
    assert len(text) > 4_000_000
    assert text.startswith(b"In the beginning God created the heaven and the earth.")


def test_unknown_corpus_is_a_clear_error_and_new_ones_plug_in() -> None:
    with pytest.raises(ConfigError, match="unknown corpus"):
        load_corpus("nope")
    register_corpus("test-abc", lambda: b"abc" * 1000)
    assert "test-abc" in corpus_names()
    assert load_corpus("test-abc") == b"abc" * 1000


def test_batches_depend_only_on_seed_shard_and_step() -> None:
    data = TextData(DataConfig(seq_len=16, batch_size=3), text=bytes(range(256)) * 40)
    a, b = data.sampler(1, 4), data.sampler(1, 4)
    for step in (0, 5, 1000):
        torch.testing.assert_close(a.batch(step)[0], b.batch(step)[0])
    assert not torch.equal(a.batch(0)[0], a.batch(1)[0])
    inputs, targets = a.batch(3)
    assert inputs.shape == targets.shape == (3, 16)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    shard = set(data.shard(1, 4).tolist())
    assert set(inputs.flatten().tolist()) <= shard


def test_validation_is_held_out_and_fixed() -> None:
    data = TextData(DataConfig(seq_len=8, batch_size=2, val_windows=10, val_fraction=0.1), text=bytes(1000))
    assert len(data.train) == 900
    assert len(data.val) == 100
    first, second = data.validation_batches(4), data.validation_batches(4)
    assert [len(x) for x, _ in first] == [4, 4, 2]
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(first, second, strict=True))


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ConfigError):
        TextData(DataConfig(seq_len=64), text=bytes(100))
    data = TextData(DataConfig(seq_len=8), text=bytes(1000))
    with pytest.raises(ConfigError, match="out of range"):
        data.shard(4, 4)
