"""Byte-level text data: a train/validation split, per-peer shards, and deterministic batches.

Tokens are bytes (vocabulary 256), so no tokenizer has to ship or download. The last
``val_fraction`` of the corpus is held out. Training text is cut into ``shards`` contiguous pieces;
a peer reads only its own. Batches are random windows drawn from a generator seeded by
``(seed, shard, step)``, so the data cursor is just the step number: a resumed or joining peer
continues exactly where the schedule says, with no sampler state to save.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from swarmnet.data.corpus import load_corpus
from swarmnet.errors import ConfigError

__all__ = ["VOCAB_SIZE", "DataConfig", "ShardSampler", "TextData"]

VOCAB_SIZE = 256
Batch = tuple[torch.Tensor, torch.Tensor]  # inputs and next-token targets, int64, (batch, seq_len)


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which text, and how it is cut into training batches and validation windows."""

    corpus: str = "kjv"
    seq_len: int = 128
    batch_size: int = 8
    val_fraction: float = 0.05
    val_windows: int = 256  # fixed seeded windows of the held-out text; validation loss is their mean
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.seq_len < 2 or self.batch_size < 1 or self.val_windows < 1:
            raise ConfigError(f"need seq_len >= 2, batch_size >= 1, val_windows >= 1: {self}")
        if not 0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in (0, 0.5): {self.val_fraction}")


class TextData:
    """One corpus as byte tensors, split into training and held-out text."""

    def __init__(self, config: DataConfig, text: bytes | None = None) -> None:
        config.validate()
        self.config = config
        raw = load_corpus(config.corpus) if text is None else text
        tokens = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        split = int(len(tokens) * (1 - config.val_fraction))
        self.train, self.val = tokens[:split], tokens[split:]
        if len(self.val) <= config.seq_len + 1:
            raise ConfigError(f"corpus of {len(raw)} bytes is too small for seq_len {config.seq_len}")

    def shard(self, index: int, count: int) -> torch.Tensor:
        """The ``index``-th of ``count`` contiguous pieces of the training text."""
        if not 0 <= index < count:
            raise ConfigError(f"shard index {index} out of range for {count} shards")
        size = len(self.train) // count
        if size <= self.config.seq_len + 1:
            raise ConfigError(f"{count} shards of {len(self.train)} bytes are too small for seq_len")
        return self.train[index * size : (index + 1) * size]

    def sampler(self, index: int, count: int) -> ShardSampler:
        """Batches from shard ``index`` of ``count``."""
        return ShardSampler(self.shard(index, count), self.config, shard_index=index)

    def validation_batches(self, batch_size: int = 64) -> list[Batch]:
        """The fixed validation windows, in batches (the same for every peer and every call)."""
        generator = torch.Generator().manual_seed(self.config.seed + 7919)
        n, seq = self.config.val_windows, self.config.seq_len
        starts = torch.randint(0, len(self.val) - seq - 1, (n,), generator=generator)
        return [_windows(self.val, starts[i : i + batch_size], seq) for i in range(0, n, batch_size)]


class ShardSampler:
    """Random windows of one shard; ``batch(step)`` depends only on (seed, shard, step)."""

    def __init__(self, tokens: torch.Tensor, config: DataConfig, *, shard_index: int) -> None:
        self.tokens, self.config, self.shard_index = tokens, config, shard_index

    def batch(self, step: int) -> Batch:
        """The training batch for global inner step ``step``."""
        seed = (self.config.seed * 1_000_003 + self.shard_index) * 1_000_033 + step
        generator = torch.Generator().manual_seed(seed % (1 << 63))
        seq = self.config.seq_len
        starts = torch.randint(0, len(self.tokens) - seq - 1, (self.config.batch_size,), generator=generator)
        return _windows(self.tokens, starts, seq)


def _windows(tokens: torch.Tensor, starts: torch.Tensor, seq_len: int) -> Batch:
    offsets = starts.unsqueeze(1) + torch.arange(seq_len + 1).unsqueeze(0)
    chunk = tokens[offsets].long()
    return chunk[:, :-1], chunk[:, 1:]
