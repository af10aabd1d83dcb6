"""An adapter's tensors as one flat float32 vector, and the schema that maps one to the other.

The coordinator only ever sees flat vectors (that is what codecs, masks and strategies work on);
the schema (names and shapes, in order) travels with the global adapter so a client can check that
its own LoRA layout is the one the federation trains before it sends anything.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["AdapterSchema", "TensorSpec"]


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the adapter: its state-dict name and shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        """Elements in the tensor."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class AdapterSchema:
    """The ordered tensors of an adapter; ``flatten`` and ``unflatten`` are exact inverses."""

    tensors: tuple[TensorSpec, ...]

    @classmethod
    def of(cls, state: Mapping[str, torch.Tensor]) -> AdapterSchema:
        """The schema of a state dict, tensors sorted by name (so every side agrees whatever its dict order)."""
        return cls(tuple(TensorSpec(name, tuple(int(d) for d in state[name].shape)) for name in sorted(state)))

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, Sequence[int]]]) -> AdapterSchema:
        """Build from (name, shape) pairs; ``ValueError`` for duplicates or negative sizes."""
        specs = tuple(TensorSpec(str(name), tuple(int(d) for d in shape)) for name, shape in pairs)
        if len({s.name for s in specs}) != len(specs):
            raise ValueError("adapter schema has duplicate tensor names")
        if any(d < 0 for s in specs for d in s.shape):
            raise ValueError("adapter schema has a negative dimension")
        return cls(specs)

    @property
    def numel(self) -> int:
        """Length of the flat vector."""
        return sum(s.numel for s in self.tensors)

    def digest(self) -> str:
        """A short stable fingerprint, for logs and error messages."""
        body = json.dumps([[s.name, list(s.shape)] for s in self.tensors]).encode()
        return hashlib.sha256(body).hexdigest()[:16]

    def flatten(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate ``state``'s tensors in schema order as float32; ``ValueError`` on any mismatch."""
        self.check(state)
        if not self.tensors:
            return torch.zeros(0)
        return torch.cat([state[s.name].detach().reshape(-1).to(torch.float32, copy=True) for s in self.tensors])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector back into named tensors (copies, float32)."""
        if vector.dim() != 1 or vector.numel() != self.numel:
            raise ValueError(f"expected a flat vector of {self.numel} elements, got shape {list(vector.shape)}")
        out: dict[str, torch.Tensor] = {}
        offset = 0
        for spec in self.tensors:
            out[spec.name] = vector[offset : offset + spec.numel].reshape(spec.shape).to(torch.float32, copy=True)
            offset += spec.numel
        return out

    def check(self, state: Mapping[str, torch.Tensor]) -> None:
        """``ValueError`` naming the first difference between ``state`` and this schema."""
        names = [s.name for s in self.tensors]
        if sorted(state) != sorted(names):
            missing = sorted(set(names) - set(state))
            extra = sorted(set(state) - set(names))
            raise ValueError(f"adapter tensors differ from the schema: missing {missing[:5]}, extra {extra[:5]}")
        for spec in self.tensors:
            shape = tuple(state[spec.name].shape)
            if shape != spec.shape:
                raise ValueError(f"adapter tensor {spec.name} has shape {list(shape)}, the schema {list(spec.shape)}")
