"""Where federated learning's privacy-relevant random draws come from: the OS, or a seed (insecure).

Differential-privacy noise protects an update only while nobody can reproduce it, and sampling
clients amplifies privacy only while nobody can predict the sample. So by default every such draw
comes from the operating system's CSPRNG: Gaussian noise straight from ``os.urandom`` (Box-Muller
over 53-bit uniforms), client samples from ``secrets.SystemRandom``. A torch generator is no
substitute for the noise even when seeded from the OS: its Mersenne Twister keeps only the low 32
bits of the seed, so the noise of a round would be one of 2**32 sequences anyone can enumerate.

``insecure_deterministic_seed`` makes every draw a function of that seed, the round and the call,
so an experiment or a test repeats draw for draw. Anyone who knows the seed can then subtract the
noise and predict the sample: the name says so, the coordinator and the client log a warning, and
``swarmnet coordinator`` offers no flag for it (experiments and tests set it through the Python API).
"""

from __future__ import annotations

import functools
import math
import os
import random
import secrets

import numpy as np
import torch

from swarmnet.federated.privacy import gaussian_noise

__all__ = ["Randomness", "os_gaussian"]

_MULTIPLIER = 1_000_003  # deterministic streams: seed * M + key, as coordinators always derived them
_INSECURE_WARNING = (
    "INSECURE deterministic randomness (seed %d): differential-privacy noise and client sampling are "
    "reproducible by anyone who knows the seed; for experiments and tests only"
)


def os_gaussian(length: int, std: float) -> torch.Tensor:
    """``length`` float32 samples of ``N(0, std^2)`` from ``os.urandom`` (CPU).

    Box-Muller in float64 over 53-bit uniforms: ``u1`` in ``(0, 1]`` (so the log is finite) and
    ``u2`` in ``[0, 1)``; each pair of uniforms gives two normals. Raises ``ValueError`` for a
    negative length or a negative or non-finite std.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be an int >= 0, got {length!r}")
    if isinstance(std, bool) or not isinstance(std, int | float) or not (math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    pairs = (length + 1) // 2
    words = np.frombuffer(os.urandom(16 * pairs), dtype="<u8").reshape(2, pairs) >> np.uint64(11)
    u1 = (words[0].astype(np.float64) + 1.0) * 2.0**-53
    u2 = words[1].astype(np.float64) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(u1))
    normal = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:length]
    return torch.from_numpy(normal * std).to(torch.float32)


class Randomness:
    """The source of DP noise, client samples and stochastic rounding for one coordinator or client.

    ``Randomness()`` draws from the OS every time. ``Randomness(insecure_deterministic_seed=s)``
    derives each draw from ``s`` and the caller's ``key`` (the round number, say), so a run repeats.
    """

    def __init__(self, insecure_deterministic_seed: int | None = None) -> None:
        seed = insecure_deterministic_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"insecure_deterministic_seed must be an int >= 0 or None, got {seed!r}")
        self._seed = seed

    @property
    def deterministic(self) -> bool:
        """Whether draws follow a seed (insecure)."""
        return self._seed is not None

    def warning(self) -> str | None:
        """The warning to log at start in deterministic mode; ``None`` when draws come from the OS."""
        return None if self._seed is None else _INSECURE_WARNING % self._seed

    def rng(self, *key: int) -> random.Random:
        """A ``random.Random`` for choices such as the client sample: ``secrets.SystemRandom`` by default."""
        if self._seed is None:
            return secrets.SystemRandom()
        return random.Random(":".join(str(k) for k in (self._seed, *key)))

    def generator(self, *key: int) -> torch.Generator:
        """A torch CPU generator (stochastic rounding, subset draws): OS-seeded by default.

        Not for DP noise (see the module docstring): use ``gaussian``.
        """
        if self._seed is None:
            return torch.Generator().manual_seed(secrets.randbits(63))
        derived = functools.reduce(lambda a, k: a * _MULTIPLIER + k, key, self._seed)
        return torch.Generator().manual_seed(derived % (1 << 63))

    def gaussian(self, length: int, std: float, *key: int) -> torch.Tensor:
        """``length`` float32 samples of ``N(0, std^2)``: from ``os.urandom``, or from the seeded generator."""
        if self._seed is None:
            return os_gaussian(length, std)
        return gaussian_noise(length, std, self.generator(*key))
