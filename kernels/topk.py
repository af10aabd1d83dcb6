"""Top-k by threshold (Deep Gradient Compression): estimate, select, compact and update the residual.

``topk_threshold(x, k, residual)`` works on ``v = x + residual`` (flat fp32) and returns the ascending
indices of ``|v| >= t`` with ``v`` at those indices; the residual keeps ``v`` everywhere else. The
threshold ``t`` comes from ``estimate_threshold``, shared by every backend: the sample positions are
drawn on the host with one seeded ``torch.Generator``, so all backends pick the same ``t`` and therefore
the same entries, bit for bit.

The count is whatever the threshold selects, near ``k`` but not ``k``: the caller trims or refines
(the top-k codec does). This kernel is the single fused pass "threshold, select, compact, residual".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from swarmnet.kernels.dispatch import Dispatch, select_backend
from swarmnet.kernels.threads import PIECE_ELEMENTS, parallel_map, spans

__all__ = ["DISPATCH", "estimate_threshold", "topk_threshold", "topk_threshold_cpu", "topk_threshold_reference"]

TopKFn = Callable[[torch.Tensor, int, torch.Tensor | None, int, int], tuple[torch.Tensor, torch.Tensor]]

# Entries per step of the CPU pass. A chunk's |v| and mask are reused buffers that stay in cache between
# the add, abs, compare and compaction: smaller chunks pay Python overhead per numpy call, larger ones let
# the buffers leave the cache (this size ran fastest at 25M entries).
_CHUNK = 1 << 18
# Entries per piece handed to a thread (see swarmnet.kernels.threads).
_PIECE = PIECE_ELEMENTS


def validate_arguments(x: torch.Tensor, k: int, residual: torch.Tensor | None, sample_size: int) -> int:
    """``k`` clamped to ``x.numel()``; ``ValueError`` for a negative ``k``, a bad sample or residual size."""
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    if sample_size < 1:
        raise ValueError(f"sample_size must be positive, got {sample_size}")
    if residual is not None and residual.numel() != x.numel():
        raise ValueError(f"residual has {residual.numel()} elements, x has {x.numel()}")
    return min(k, x.numel())


def estimate_threshold(
    v: torch.Tensor, k: int, sample_size: int = 65536, seed: int = 0, *, residual: torch.Tensor | None = None
) -> float:
    """The DGC threshold for keeping about ``k`` of the ``n`` entries of ``v`` (+ ``residual``) by magnitude.

    ``n > sample_size``: ``sample_size`` positions are drawn uniformly (with replacement) by a CPU
    ``torch.Generator`` seeded from ``(seed, n)`` only, and ``t`` is the ``ceil(k * sample_size / n)``-th
    largest magnitude of the sample (at least the 1st, at most the smallest). ``n <= sample_size``: the
    sample is all of ``v``, so ``t`` is the ``k``-th largest magnitude and ``|v| >= t`` is the exact top-k
    up to ties. ``k == 0`` (or ``n == 0``) gives NaN, which no magnitude reaches: nothing is selected.

    With ``residual`` the threshold is that of ``v + residual`` (same shape, fp32), computed from the
    sampled positions only, so a fused pass need not form the sum first; the add is the same fp32 add
    the pass does, so ``t`` is exactly one of the magnitudes it compares. NaN entries count as magnitude
    0 here (and are never selected by ``|v| >= t``). ``t`` is an fp32 value, exact as a Python float.
    """
    flat = v.reshape(-1)
    n = flat.numel()
    k = min(k, n)
    if k <= 0:
        return math.nan
    if n <= sample_size:
        sample = flat if residual is None else flat + residual.reshape(-1)
        rank = k
    else:
        # The generator depends on seed and size only: every backend, and every call on a tensor of this
        # size, draws the same positions (as the top-k codec does).
        generator = torch.Generator().manual_seed((seed * 1_000_003 + n) % (1 << 63))
        positions = torch.randint(0, n, (sample_size,), generator=generator).to(flat.device)
        sample = flat[positions]
        if residual is not None:
            sample = sample + residual.reshape(-1)[positions]
        rank = min(sample_size, max(1, math.ceil(k * sample_size / n)))
    magnitude = torch.nan_to_num(sample.abs(), nan=0.0)
    # The rank-th largest is the (size - rank + 1)-th smallest; kthvalue avoids sorting the sample.
    return float(torch.kthvalue(magnitude, magnitude.numel() - rank + 1).values)


def topk_threshold_reference(
    x: torch.Tensor, k: int, residual: torch.Tensor | None = None, sample_size: int = 65536, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch: the definition of correct (see ``topk_threshold``)."""
    k = validate_arguments(x, k, residual, sample_size)
    threshold = estimate_threshold(x, k, sample_size, seed, residual=residual)
    flat = x.detach().reshape(-1)  # like the other backends: no autograd graph through the selection
    v = flat if residual is None else flat + residual.detach().reshape(-1)
    selected = v.abs() >= threshold
    indices = selected.nonzero().reshape(-1)  # nonzero lists positions in increasing order
    values = v[indices]
    if residual is not None:
        residual.copy_(v.masked_fill(selected, 0.0).view(residual.shape))
    return indices, values


def topk_threshold_cpu(
    x: torch.Tensor, k: int, residual: torch.Tensor | None = None, sample_size: int = 65536, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One numpy pass over cache-sized chunks: ``r += x``, ``|r| >= t``, gather the hits, zero them in ``r``.

    Memory traffic is one read of ``x`` and one read and write of the residual; the magnitudes and the
    mask stay in cache. The tensor is cut into pieces of ``PIECE_ELEMENTS`` handed out to up to
    ``torch.get_num_threads()`` threads as each finishes its last (``parallel_map``; numpy releases the GIL
    in its loops), so a thread the OS does not schedule holds back one piece, not a fixed share. Same
    results, bit for bit, as the reference.
    """
    k = validate_arguments(x, k, residual, sample_size)
    threshold = estimate_threshold(x, k, sample_size, seed, residual=residual)
    source = x.detach().reshape(-1).contiguous().numpy()
    work: torch.Tensor | None = None
    if residual is not None:
        # The pass accumulates into the residual itself; a strided one is worked on as a copy.
        work = residual.detach().view(-1) if residual.is_contiguous() else residual.detach().reshape(-1).clone()
    target = None if work is None else work.numpy()
    found = parallel_map(
        lambda span: _select_pass(
            source[span[0] : span[1]], None if target is None else target[span[0] : span[1]], threshold, span[0]
        ),
        spans(source.size, size=_PIECE),
    )
    if len(found) == 1:
        indices, values = found[0]
    else:
        indices = np.concatenate([part[0] for part in found]) if found else np.zeros(0, np.int64)
        values = np.concatenate([part[1] for part in found]) if found else np.zeros(0, np.float32)
    if residual is not None and work is not None and not residual.is_contiguous():
        residual.copy_(work.view(residual.shape))
    return torch.from_numpy(indices), torch.from_numpy(values)


def _select_pass(
    x: npt.NDArray[np.float32], residual: npt.NDArray[np.float32] | None, threshold: float, offset: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(ascending indices + ``offset``, values) of ``|x (+ residual)| >= threshold``; the residual becomes
    ``v`` with the hits zeroed. ``threshold`` is an fp32 value, so comparing in fp32 is exact."""
    n = x.size
    size = min(_CHUNK, n)
    magnitude = np.empty(size, np.float32)
    mask = np.empty(size, np.bool_)
    bound = np.float32(threshold)
    found_indices: list[npt.NDArray[np.int64]] = []
    found_values: list[npt.NDArray[np.float32]] = []
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        if residual is None:
            v = x[start:stop]
        else:
            v = residual[start:stop]
            np.add(x[start:stop], v, out=v)  # x + r: the reference's fp32 add
        m, s = magnitude[: stop - start], mask[: stop - start]
        np.abs(v, out=m)
        np.greater_equal(m, bound, out=s)  # NaN compares False: never selected
        hits = np.flatnonzero(s)
        if hits.size:
            found_values.append(v[hits])
            if residual is not None:
                v[hits] = 0.0
            found_indices.append(hits + (start + offset))
    if not found_indices:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(found_indices).astype(np.int64, copy=False), np.concatenate(found_values)


def _load_triton() -> TopKFn:
    from swarmnet.kernels.triton_topk import topk_threshold_triton

    return topk_threshold_triton


DISPATCH: Dispatch[TopKFn] = Dispatch(
    "topk_threshold", reference=topk_threshold_reference, cpu=topk_threshold_cpu, load_triton=_load_triton
)


def topk_threshold(
    x: torch.Tensor, k: int, residual: torch.Tensor | None = None, sample_size: int = 65536, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Select the entries of ``v = x (+ residual)`` whose magnitude reaches the DGC threshold for ``k``.

    Args:
        x: fp32, any shape (read as flat, row-major); not modified.
        k: the wanted count (clamped to ``x.numel()``; 0 selects nothing).
        residual: optional fp32 error-feedback state with ``x.numel()`` elements, on ``x``'s device and not
            overlapping ``x``. Updated in place: ``residual <- v`` with the selected positions set to 0
            (the transmitted part leaves it; the rest waits for later rounds).
        sample_size: positions sampled for the threshold (see ``estimate_threshold``).
        seed: seeds the sampling together with ``x.numel()``.

    Returns:
        ``(indices, values)``: int64 positions ``i`` in increasing order with ``|v[i]| >= t``, and fp32
        ``v[i]``, where ``t = estimate_threshold(x, k, sample_size, seed, residual=residual)``.
        ``v = x + residual`` is one fp32 add per element. The count is whatever ``t`` selects: about ``k``
        when ``x.numel() > sample_size`` (the caller trims or refines; nothing here does), exactly ``k``
        otherwise unless magnitudes tie at ``t``. NaN entries are never selected and stay in the residual.

    Raises:
        KernelError: a dtype other than fp32, tensors on different devices, or no backend for the device.
        ValueError: ``k < 0``, ``sample_size < 1`` or a residual of the wrong size.
    """
    backend = select_backend(x) if residual is None else select_backend(x, residual)
    return DISPATCH.impl(backend)(x, k, residual, sample_size, seed)
