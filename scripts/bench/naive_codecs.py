"""Naive baselines for ``codecs.py``: each lossy codec written the obvious way in vectorised PyTorch.

No wire header, no checks, no fusion: what one would write first. Each object encodes a flat
fp32 tensor of a fixed size into ``bytes`` and decodes those bytes back; the error-feedback ones
keep their residual between calls (``v = g + r``, send ``v`` compressed, ``r = v - decoded``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn.functional import pad

__all__ = ["NaiveBlockQuant", "NaiveSign1BitEF", "NaiveTopKEF"]


def _tensor(payload: bytes, dtype: np.dtype[np.generic], count: int, offset: int = 0) -> torch.Tensor:
    """A writable tensor copied out of ``payload`` (``frombuffer`` alone would be read-only)."""
    return torch.from_numpy(np.frombuffer(payload, dtype=dtype, count=count, offset=offset).copy())


class NaiveBlockQuant:
    """Blockwise absmax quantisation to int8 (``bits=8``) or packed int4 (``bits=4``), fp32 scales."""

    def __init__(self, numel: int, bits: int, block: int) -> None:
        if bits not in (4, 8) or block % 2:
            raise ValueError(f"bits must be 4 or 8 and the block even, got {bits} and {block}")
        self.numel, self.bits, self.block = numel, bits, block
        self.rows = math.ceil(numel / block)
        self.levels = 127 if bits == 8 else 7

    def encode(self, g: torch.Tensor) -> bytes:
        x = pad(g.reshape(-1), (0, self.rows * self.block - self.numel)).view(self.rows, self.block)
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-30) / self.levels
        q = torch.round(x / scale).clamp(-self.levels, self.levels)
        if self.bits == 8:
            body = q.to(torch.int8).numpy().tobytes()
        else:
            u = (q + 8).to(torch.uint8)
            body = ((u[:, 0::2] << 4) | u[:, 1::2]).numpy().tobytes()
        return body + scale.numpy().tobytes()

    def decode(self, payload: bytes) -> torch.Tensor:
        body = self.rows * self.block * self.bits // 8
        scale = _tensor(payload, np.dtype(np.float32), self.rows, offset=body).view(self.rows, 1)
        if self.bits == 8:
            q = _tensor(payload, np.dtype(np.int8), body).view(self.rows, self.block).float()
        else:
            packed = _tensor(payload, np.dtype(np.uint8), body).view(self.rows, self.block // 2)
            q = torch.stack([packed >> 4, packed & 15], dim=2).view(self.rows, self.block).float() - 8
        return (q * scale).view(-1)[: self.numel]


class NaiveSign1BitEF:
    """1-bit sign with a mean-|v| scale per chunk and error feedback."""

    def __init__(self, numel: int, chunk: int = 4096) -> None:
        self.numel, self.chunk = numel, chunk
        self.rows = math.ceil(numel / chunk)
        self.residual = torch.zeros(numel)

    def encode(self, g: torch.Tensor) -> bytes:
        v = g.reshape(-1) + self.residual
        padded = pad(v, (0, self.rows * self.chunk - self.numel))
        scale = padded.abs().view(-1, self.chunk).mean(1)
        positive = v >= 0
        bits = np.packbits(positive.numpy())
        spread = scale.repeat_interleave(self.chunk)[: self.numel]
        decoded = torch.where(positive, spread, -spread)
        self.residual = v - decoded
        return bits.tobytes() + scale.numpy().tobytes()

    def decode(self, payload: bytes) -> torch.Tensor:
        nbits = math.ceil(self.numel / 8)
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8, count=nbits), count=self.numel)
        scale = _tensor(payload, np.dtype(np.float32), self.rows, offset=nbits)
        signs = torch.from_numpy(bits).float() * 2 - 1
        return signs * scale.repeat_interleave(self.chunk)[: self.numel]


class NaiveTopKEF:
    """Top-k by ``torch.topk`` of ``|v|``, int32 indices and fp16 values, with error feedback."""

    def __init__(self, numel: int, ratio: float = 0.01) -> None:
        self.numel = numel
        self.k = max(1, math.ceil(ratio * numel))
        self.residual = torch.zeros(numel)

    def encode(self, g: torch.Tensor) -> bytes:
        v = g.reshape(-1) + self.residual
        _, indices = torch.topk(v.abs(), self.k, sorted=False)
        values = v[indices].half()
        v[indices] -= values.float()
        self.residual = v
        return indices.int().numpy().tobytes() + values.view(torch.int16).numpy().tobytes()

    def decode(self, payload: bytes) -> torch.Tensor:
        indices = _tensor(payload, np.dtype(np.int32), self.k).long()
        values = _tensor(payload, np.dtype(np.int16), self.k, offset=4 * self.k).view(torch.float16)
        out = torch.zeros(self.numel)
        out[indices] = values.float()
        return out
