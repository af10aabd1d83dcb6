"""Configuration of DiLoCo and Streaming DiLoCo: inner optimizer, outer optimizer, sync schedule."""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmnet.errors import ConfigError

__all__ = ["DiLoCoConfig", "InnerConfig", "OuterConfig"]


@dataclass(frozen=True, kw_only=True)
class InnerConfig:
    """AdamW on each replica, with linear warm-up then cosine decay over ``total_steps``."""

    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1  # on matrices only (biases and norms are not decayed)
    warmup_steps: int = 30
    total_steps: int = 600  # length of the cosine schedule; later steps stay at the floor
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping

    def lr_at(self, step: int) -> float:
        """Learning rate of inner step ``step`` (0-based), a pure function of the step."""
        import math

        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.lr * self.min_lr_ratio
        return floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.lr <= 0 or not all(0 <= b < 1 for b in self.betas) or self.weight_decay < 0:
            raise ConfigError(f"invalid inner optimizer: {self}")
        if self.warmup_steps < 0 or self.total_steps < 1 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip < 0:
            raise ConfigError(f"invalid inner schedule: {self}")


@dataclass(frozen=True, kw_only=True)
class OuterConfig:
    """SGD with Nesterov momentum on the averaged pseudo-gradient (DiLoCo's outer optimizer)."""

    lr: float = 0.7
    momentum: float = 0.9

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.lr <= 0 or not 0 <= self.momentum < 1:
            raise ConfigError(f"invalid outer optimizer: {self}")


@dataclass(frozen=True, kw_only=True)
class DiLoCoConfig:
    """How often and how replicas sync.

    ``fragments == 1`` is DiLoCo: every ``inner_steps`` steps all parameters are synced and the outer
    step applies at once. ``fragments > 1`` is Streaming DiLoCo: the flat parameter vector is cut into
    that many equal fragments, fragment ``p`` syncs every ``inner_steps`` steps at offset
    ``(p + 1) * inner_steps / fragments``, its exchange overlaps the next ``overlap_steps`` inner steps,
    and on arrival the local fragment becomes ``mixing * local + (1 - mixing) * global``.
    """

    inner_steps: int = 50  # H
    fragments: int = 1  # P
    overlap_steps: int = 0  # tau: inner steps that run while a fragment's exchange is in flight
    mixing: float = 0.0  # alpha: share of the local fragment kept when the new global one is merged
    codec: str = "none"  # wire codec of the pseudo-gradients (``swarmnet.compression`` registry name)
    inner: InnerConfig = field(default_factory=InnerConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        from swarmnet.compression import codec_names

        if self.inner_steps < 1 or not 1 <= self.fragments <= self.inner_steps:
            raise ConfigError(f"need inner_steps >= 1 and 1 <= fragments <= inner_steps: {self}")
        if not 0 <= self.overlap_steps < self.inner_steps // self.fragments + (self.fragments == 1):
            raise ConfigError("overlap_steps must be shorter than the gap between two fragments' syncs")
        if not 0 <= self.mixing < 1:
            raise ConfigError(f"mixing must be in [0, 1): {self.mixing}")
        if self.codec not in codec_names():
            raise ConfigError(f"unknown codec {self.codec!r}; known: {', '.join(codec_names())}")
        self.inner.validate()
        self.outer.validate()

    def syncs_after(self, step: int) -> list[int]:
        """Fragments whose sync starts once ``step`` inner steps are done (``step`` >= 1)."""
        H, P = self.inner_steps, self.fragments  # noqa: N806 (the papers' names)
        return [p for p in range(P) if step % H == ((p + 1) * H // P) % H]

    def syncs_through(self, step: int) -> int:
        """Fragment syncs that start at inner steps ``1..step``: the most rounds a state at ``step`` can hold."""
        H, P = self.inner_steps, self.fragments  # noqa: N806 (the papers' names)
        total = 0
        for p in range(P):
            offset = ((p + 1) * H // P) % H or H  # the first inner step at which fragment p syncs
            total += 0 if step < offset else (step - offset) // H + 1
        return total
