"""A small decoder-only transformer (pre-LN GPT) over bytes, with named size presets.

Byte-level (vocabulary 256) so nothing has to be downloaded; tied input and output embeddings;
learned positions; causal attention through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import cross_entropy, scaled_dot_product_attention

from swarmnet.errors import ConfigError

__all__ = ["PRESETS", "GPT", "GPTConfig", "preset"]


@dataclass(frozen=True, kw_only=True)
class GPTConfig:
    """Shape of the model."""

    vocab_size: int = 256
    context: int = 128
    layers: int = 4
    width: int = 128
    heads: int = 4
    dropout: float = 0.0

    def validate(self) -> None:
        """Raise ``ConfigError`` for a shape the model cannot have."""
        if min(self.vocab_size, self.context, self.layers, self.width, self.heads) < 1:
            raise ConfigError(f"every size must be positive: {self}")
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by heads {self.heads}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1): {self.dropout}")


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(context=32, layers=2, width=32, heads=2),  # ~35K parameters: fast unit tests
    "debug": GPTConfig(context=128, layers=4, width=128, heads=4),  # ~0.84M: integration tests, experiments
    "demo": GPTConfig(context=128, layers=6, width=192, heads=6),  # ~2.7M: the local demo
    "small": GPTConfig(context=256, layers=8, width=512, heads=8),  # ~25M: GPU runs
}


def preset(name: str) -> GPTConfig:
    """The named preset; ``ConfigError`` if unknown."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


class _Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.norm1 = nn.LayerNorm(config.width)
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)
        self.norm2 = nn.LayerNorm(config.width)
        self.mlp = nn.Sequential(
            nn.Linear(config.width, 4 * config.width), nn.GELU(), nn.Linear(4 * config.width, config.width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, seq, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        dropout = self.dropout if self.training else 0.0
        attended = scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, seq, width))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class GPT(nn.Module):
    """``forward(tokens)`` gives next-token logits; ``loss(tokens, targets)`` the mean cross-entropy (nats)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.width)
        self.position = nn.Embedding(config.context, config.width)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.apply(self._init)
        for name, parameter in self.named_parameters():
            if name.endswith(("proj.weight", "mlp.2.weight")):
                # GPT-2's residual scaling keeps the residual stream's variance flat with depth.
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, seq, vocab) for int64 ``tokens`` of shape (batch, seq <= context)."""
        seq = tokens.shape[1]
        if seq > self.config.context:
            raise ValueError(f"sequence of {seq} tokens is longer than the context {self.config.context}")
        x = self.embed(tokens) + self.position(torch.arange(seq, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.norm(x) @ self.embed.weight.T  # tied output embedding
        return logits

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy in nats."""
        logits = self(tokens)
        return cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, prompt: bytes, length: int, *, temperature: float = 0.8, seed: int = 0) -> bytes:
        """``length`` bytes sampled after ``prompt`` (seeded, so every peer prints the same text)."""
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.tensor([list(prompt or b"\n")], dtype=torch.long)
        was_training = self.training
        self.eval()
        for _ in range(length):
            logits = self(tokens[:, -self.config.context :])[0, -1] / max(temperature, 1e-4)
            token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            tokens = torch.cat([tokens, token.view(1, 1)], dim=1)
        self.train(was_training)
        return bytes(tokens[0, len(prompt or b"\n") :].tolist())

    def num_parameters(self) -> int:
        """Number of parameters (tied embeddings counted once)."""
        return sum(p.numel() for p in self.parameters())
