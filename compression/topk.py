"""Top-k sparsification: send the largest-magnitude entries, their positions delta-coded and bit-packed.

Selection (``selection=``):

* ``"exact"``: ``torch.topk(|x|, k)``; exact but slow on big tensors (a partial sort of all of them).
* ``"sampled"`` (Deep Gradient Compression): estimate the threshold from ``sample_size`` random
  entries (the ``k * sample / n``-th largest magnitude of the sample), then select ``|x| >= t`` in
  one pass: ``swarmnet.kernels.topk.topk_threshold`` (through the kernel dispatcher), which also
  does the error-feedback add and residual update in the same pass. The count lands near ``k``;
  if it falls outside ``[k - 3k//10, k + 3k//10]`` it is refined (an exact top-k of the
  over-selected subset, or a second, lower threshold and then, only if that also misses, an exact
  top-k of the whole tensor).

**Selection guarantee.** For finite inputs the selected set is always exactly the ``m`` largest
magnitudes of the tensor (up to ties at the boundary) for some ``m`` with
``k - 3k//10 <= m <= k + 3k//10`` (``m == k`` for ``"exact"``, and whenever sampling is skipped:
``n <= sample_size`` or ``k == n``). Sampling only decides ``m``, never which entries win, so the
payload never exceeds ``payload_size(k + 3k//10, bits(n - 1), values)``. Cost: at most two
threshold passes, plus one exact top-k over the whole tensor in the (rare) case that both
threshold estimates under-select.

Values and payload layout: ``topk_payload.py``. The decoder checks every field, the section sizes,
and that the decoded indices are strictly increasing and below ``numel`` before it allocates
anything of the tensor's size.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from swarmnet.compression.base import NON_FINITE, Codec, all_finite, allocate, flat_float, unpack_matching
from swarmnet.compression.bitpack import bit_width, pack_indices
from swarmnet.compression.topk_payload import (
    FORMATS,
    FP32_MAX,
    ValueFormat,
    Values,
    encode_values,
    pack_params,
    parse,
    payload_size,
)
from swarmnet.compression.wire import CodecId, Header, pack
from swarmnet.errors import CodecError
from swarmnet.kernels.topk import estimate_threshold, topk_threshold, topk_threshold_reference

__all__ = ["TopKCodec", "ValueFormat", "payload_size", "selection_window"]

Selection = Literal["exact", "sampled"]

_EULER_GAMMA = 0.5772156649015329


def selection_window(k: int) -> tuple[int, int]:
    """``(low, cap)``: the counts a sampled selection accepts without refinement, ``k -+ 3k//10``."""
    slack = (3 * k) // 10
    return k - slack, k + slack


def _threshold_pass(
    x: torch.Tensor, k: int, residual: torch.Tensor | None, sample_size: int, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """(ascending indices, values) of ``|v| >= t`` for ``v = x (+ residual)``: one ``topk_threshold`` pass.

    The kernel estimates ``t`` from the seeded sample and, with ``residual``, leaves ``v`` in it with
    the selected positions zeroed. fp32 goes through the kernel dispatcher; fp64 (which the fast
    kernels do not take) through the kernel's reference, the same definition in double precision.
    """
    if x.dtype == torch.float32 and (residual is None or residual.dtype == torch.float32):
        indices, values = topk_threshold(x, k, residual, sample_size, seed)
    else:
        indices, values = topk_threshold_reference(x, k, residual, sample_size, seed)
    return indices.numpy(), values.numpy()


def _exact_topk(v: torch.Tensor, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """(ascending indices, values) of the ``k`` largest magnitudes of flat ``v`` (``torch.topk``)."""
    if k >= v.numel():
        return np.arange(v.numel(), dtype=np.int64), v.numpy().copy()
    chosen = torch.topk(v.abs(), k, sorted=False).indices.numpy()
    indices = np.sort(chosen).astype(np.int64, copy=False)
    return indices, v.numpy()[indices]


def _refine(
    candidates: npt.NDArray[np.int64], values: npt.NDArray[np.floating], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """The ``k`` largest magnitudes among ``candidates`` (ascending) and their ``values``; cheap when few
    were over-selected."""
    magnitude = np.abs(values)
    keep = np.sort(np.argpartition(magnitude, magnitude.size - k)[magnitude.size - k :])
    return candidates[keep], values[keep]


def _k_for_rank(rank: int, n: int, sample_size: int) -> int:
    """A ``k`` for which ``estimate_threshold`` takes the ``rank``-th largest sampled magnitude."""
    k = rank * n // sample_size  # n > sample_size, so ceil(k * sample_size / n) == rank exactly
    while math.ceil(k * sample_size / n) < rank:  # guard against float rounding in the kernel's ceil
        k += 1
    return k


def _sampled_topk(
    x: torch.Tensor, k: int, sample_size: int, seed: int, residual: torch.Tensor | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """DGC selection on ``v = x (+ residual)``; see the module docstring for the guarantee.

    Returns (ascending indices, ``v`` there). With ``residual`` (flat, ``n`` elements), it holds ``v``
    afterwards at every position not returned; the returned positions are the caller's to overwrite.
    """
    n = x.numel()
    indices, values = _threshold_pass(x, k, residual, sample_size, seed)
    low, cap = selection_window(k)
    if low <= indices.size <= cap:
        return indices, values  # the common case: the kernel's pass is the whole selection
    v = x
    if residual is not None:
        # Refinement may drop some of the kernel's hits: give every hit its v back first (the
        # kernel zeroed them), so the residual is v everywhere and only the final set is overwritten.
        residual.numpy()[indices] = values
        v = residual
    if indices.size < low:
        # The sample missed part of the tail: lower the threshold, aiming ~15% above k so that an
        # overshoot is trimmed cheaply instead of needing a third pass.
        rank = min(sample_size, max(1, math.ceil(k * sample_size / n)))
        wanted = math.ceil(rank * 1.15 * k / max(indices.size, 1))
        lower_k = _k_for_rank(min(sample_size, max(2 * rank, wanted)), n, sample_size)
        if estimate_threshold(v, lower_k, sample_size, seed) < estimate_threshold(v, k, sample_size, seed):
            indices, values = _threshold_pass(v, lower_k, None, sample_size, seed)
        if indices.size < low:
            return _exact_topk(v, k)
    if indices.size > cap:
        return _refine(indices, values, k)
    return indices, values


class TopKCodec(Codec):
    """Top-k sparsification with bit-packed delta-coded indices and fp16, int8 or 1-bit values.

    ``k = max(1, ceil(ratio * numel))`` (at most ``numel``; 0 for an empty tensor). See the module
    docstring for the selection guarantee and the payload layout.
    """

    codec_id = CodecId.TOPK

    def __init__(
        self,
        name: str,
        ratio: float = 0.01,
        selection: Selection = "sampled",
        values: Values = "fp16",
        sample_size: int = 65536,
        seed: int = 0,
    ) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        if selection not in ("exact", "sampled"):
            raise ValueError(f"selection must be 'exact' or 'sampled', got {selection!r}")
        if values not in FORMATS:
            raise ValueError(f"values must be one of {sorted(FORMATS)}, got {values!r}")
        if sample_size < 1:
            raise ValueError(f"sample_size must be positive, got {sample_size}")
        self.name = name
        self.ratio = ratio
        self.selection: Selection = selection
        self.values: Values = values
        self.sample_size = sample_size
        self.seed = seed
        self._format = FORMATS[values]

    def k_for(self, numel: int) -> int:
        """The nominal number of entries sent for a tensor of ``numel`` elements."""
        if numel <= 0:
            return 0
        return min(numel, max(1, math.ceil(self.ratio * numel)))

    def _select(
        self, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
        """(ascending selected indices, ``v`` there) for ``v = x (+ residual)``, both flat.

        With ``residual``, it holds ``v`` afterwards everywhere except (possibly) at the returned
        positions, which the caller overwrites.
        """
        n = x.numel()
        k = self.k_for(n)
        if self.selection == "sampled" and self.sample_size < n and k < n:
            if residual is not None and residual.dtype != x.dtype:
                x = x.to(residual.dtype)  # the generic path's fp32 (or fp64) add
            return _sampled_topk(x, k, self.sample_size, self.seed, residual)
        if residual is not None:
            x = residual.add_(x.to(residual.dtype))
        return _exact_topk(x, k)

    def _payload(
        self,
        chosen: npt.NDArray[np.floating],
        indices: npt.NDArray[np.int64],
        dtype: torch.dtype,
        shape: torch.Size,
    ) -> tuple[bytes, npt.NDArray[np.float32]]:
        """(payload, the fp32 values the decoder will produce) for the ``chosen`` values at ``indices``."""
        first, width, packed_gaps = pack_indices(indices)
        if chosen.dtype == np.float64:
            # Saturate before narrowing: an fp64 residual may hold values past fp32's range.
            chosen = np.clip(chosen, np.float64(-FP32_MAX), np.float64(FP32_MAX))
        body, scale, decoded = encode_values(self._format, chosen.astype(np.float32, copy=False))
        params = pack_params(indices.size, first, scale, width, self._format)
        return pack(self.codec_id, dtype, shape, [params, packed_gaps, body]), decoded

    def encode(self, tensor: torch.Tensor) -> bytes:
        """Select (see the module docstring), then pack indices and values."""
        flat = flat_float(tensor).detach()
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()  # half types widen exactly
        indices, chosen = self._select(flat, None)
        return self._payload(chosen, indices, tensor.dtype, tensor.shape)[0]

    def encode_with_feedback(self, tensor: torch.Tensor, residual: torch.Tensor) -> bytes:
        """Fused error feedback: one kernel pass adds ``tensor`` into ``residual`` and selects on it.

        The pass leaves ``v = residual + tensor`` in ``residual`` with the selected entries zeroed;
        those then become ``v[i] - decoded[i]`` (a k-sized scatter), so the result is the same as the
        generic ``Codec.encode_with_feedback``, bytes and residual, without a dense decode.
        """
        flat = flat_float(tensor)
        if (
            residual.dtype not in (torch.float32, torch.float64)
            or residual.device.type != "cpu"
            or not residual.is_contiguous()
            or residual.numel() != flat.numel()
        ):
            return super().encode_with_feedback(tensor, residual)
        work = residual.detach().view(-1)
        indices, chosen = self._select(flat.detach(), work)
        payload, decoded = self._payload(chosen, indices, residual.dtype, tensor.shape)
        # The generic path subtracts the decode cast to the header dtype, which is the residual's.
        work.numpy()[indices] = chosen - decoded.astype(chosen.dtype, copy=False)
        return payload

    @classmethod
    def decode_sections(cls, header: Header, sections: list[memoryview]) -> torch.Tensor:
        """Validate everything, then scatter the values into zeros."""
        indices, values = parse(header, sections)
        out = allocate(header.numel, header.dtype, zero=True)
        if header.dtype in (torch.float32, torch.float64):
            out.numpy()[indices] = values  # numpy's scatter is faster than index_put_
        else:
            out[torch.from_numpy(indices)] = torch.from_numpy(values).to(header.dtype)
        return out.reshape(header.shape)

    def decode_into(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, *, require_finite: bool = False
    ) -> None:
        """``out[...] = decode(payload)``: every check first, then zero and scatter (no full-size temporary).

        Only the sent values can be non-finite, so ``require_finite`` looks at those alone.
        """
        if not (out.is_contiguous() and out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64)):
            super().decode_into(payload, out, require_finite=require_finite)
            return
        indices, source = self._checked(payload, out, require_finite)
        flat = out.detach().view(-1).numpy()
        flat.fill(0)
        flat[indices] = source.numpy()

    def validate(self, payload: bytes | bytearray | memoryview, numel: int) -> None:
        """Parse and check everything, including the sent values' finiteness; nothing of ``numel`` size is made."""
        self._checked(payload, torch.empty(numel, device="meta"), True)

    def _checked(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, require_finite: bool
    ) -> tuple[npt.NDArray[np.int64], torch.Tensor]:
        """(indices, values as ``decode`` gives them, cast to ``out``'s dtype) of a payload for ``out``."""
        header, sections = unpack_matching(self, payload, out)
        indices, values = parse(header, sections)
        # decode() rounds the values to the payload's dtype (an fp16 payload can overflow there).
        source = torch.from_numpy(values).to(header.dtype).to(out.dtype)
        if require_finite and not all_finite(source):
            raise CodecError(NON_FINITE)
        return indices, source

    def decode_accumulate(
        self, payload: bytes | bytearray | memoryview, out: torch.Tensor, alpha: float = 1.0
    ) -> None:
        """``out += alpha * decode(payload)``, touching only the sent entries (no dense temporary)."""
        header, sections = unpack_matching(self, payload, out)
        indices, values = parse(header, sections)
        # Same arithmetic as the generic path, only on the sent entries: decode to the header dtype,
        # cast to out's, and add with ``Tensor.add_`` (index_add_ would round alpha * value first).
        source = torch.from_numpy(values).to(header.dtype).to(out.dtype)
        if out.is_contiguous() and out.dtype in (torch.float32, torch.float64):
            flat = out.detach().view(-1).numpy()  # numpy's gather/scatter beat torch's index_put_
            picked = torch.from_numpy(flat[indices])
            picked.add_(source, alpha=alpha)
            flat[indices] = picked.numpy()
            return
        target = out.view(-1) if out.is_contiguous() else out
        where = torch.from_numpy(indices)
        # A strided ``out`` is addressed by coordinates, so no contiguous copy of it is made.
        position = (where,) if out.is_contiguous() else tuple(torch.unravel_index(where, out.shape))
        picked = target[position]
        picked.add_(source, alpha=alpha)
        target[position] = picked

    def estimated_ratio(self, numel: int, dtype: torch.dtype = torch.float32) -> float:
        """``payload_size(k, w, values) / (numel * itemsize)`` for a 1-D tensor (0 elements: 1.0).

        ``w`` is estimated for uniformly spread indices: the largest of ``k - 1`` gaps averaging
        ``n / k`` is about ``(n / k) * (ln k + 0.577)``, so ``w = bits(ceil(that))``, capped at
        ``bits(n - 1)``. The real width depends on the data; ``payload_size`` with it is exact.
        """
        k = self.k_for(numel)
        if k == 0:
            return 1.0
        largest_gap = math.ceil(numel / k * (math.log(k) + _EULER_GAMMA))
        width = min(bit_width(largest_gap), bit_width(numel - 1))
        return payload_size(k, width, self.values) / (numel * dtype.itemsize)

    def __repr__(self) -> str:
        return (
            f"TopKCodec({self.name!r}, ratio={self.ratio}, selection={self.selection!r}, values={self.values!r}, "
            f"sample_size={self.sample_size}, seed={self.seed})"
        )
