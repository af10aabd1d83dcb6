"""Fresh large CPU buffers, allocated by numpy so that they get transparent huge pages.

torch's CPU allocator maps a fresh 25 MB buffer in 4 KiB pages, and the page faults on first touch cost
more than the arithmetic that fills it; numpy madvises huge pages for large arrays, so filling one of its
buffers costs a fraction of that (docs/performance.md has the figures). Hot paths that need a new buffer every
round (a reducer's sums, a peer's own contribution, decoded temporaries) take it from here. The tensors
are ordinary ones, except that their storage cannot be resized.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["empty", "zeros"]


def empty(numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised 1-D CPU tensor of ``numel`` elements of ``dtype``."""
    if not numel:
        return torch.empty(0, dtype=dtype)  # numpy gives empty arrays stride 0, which view(dtype) refuses
    return torch.from_numpy(np.empty(numel * dtype.itemsize, np.uint8)).view(dtype)


def zeros(numel: int) -> torch.Tensor:
    """A zero-filled 1-D fp32 CPU tensor (numpy's calloc: fresh zeroed pages, cheaper than ``torch.zeros``)."""
    if not numel:
        return torch.zeros(0)
    return torch.from_numpy(np.zeros(numel, np.float32))
