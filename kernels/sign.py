"""1-bit sign compression with error feedback: encode ``grad + residual`` as signs and chunk scales, and add
decoded payloads into an accumulator, each in one pass over memory.

The format (that of ``Sign1BitCodec``). A flat fp32 tensor of ``n`` elements is cut into chunks of
``chunk_size`` consecutive elements, the last one possibly shorter. Per chunk ``c`` and element ``i``::

    v[i]        = grad[i] + residual[i]                        # fp32, one rounding
    scales[c]   = sum(|v[i]| for i in chunk c) / len(chunk c)  # mean |v|: the L2-optimal scale for signs
    bit[i]      = v[i] >= 0                                    # -0.0 >= 0: zeros of either sign give 1
    decode[i]   = +scales[c] if bit[i] else -scales[c]
    residual[i] = v[i] - decode[i]                             # what error feedback carries to the next step

Bits are packed 8 per byte, most significant first (numpy's ``packbits`` order): element ``i`` is bit
``7 - i % 8`` of byte ``i // 8``; the unused low bits of the last byte are zero. For ``n`` elements that is
``ceil(n / 8)`` bytes and ``ceil(n / chunk_size)`` fp32 scales.

Rounding. The bits are exact in every implementation (one fp32 addition, then a comparison). The scales are
fp32 sums, whose rounding depends on the summation order: implementations agree to a few ulps, not bit for
bit (the Triton one sums in fp64). When an fp32 sum overflows (a mean above ``fp32 max / chunk_size``) it is
redone in fp64, so scales are finite for finite inputs. Given its own scales, every implementation's residual
is exactly ``v - decode`` (a single rounding). Non-finite inputs give non-finite scales and residuals.

``sign_decode_accumulate`` adds ``weight * decode`` as ``acc[i] + fp32(fp32(weight) * decode[i])``, two
roundings, the same in every implementation, so its results are bit-exact across them.

Speed. The obvious version (``*_reference``) makes a dozen full-size passes through memory with fresh
full-size temporaries. The CPU path walks the tensors in regions of about ``REGION_ELEMENTS`` (whole chunks,
whole bytes) with reused temporaries, so ``grad`` and ``residual`` are read once and ``residual`` written once;
the other passes run in cache. The Triton path (``triton_sign.py``) keeps a chunk group in registers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from swarmnet.buffers import empty
from swarmnet.errors import KernelError
from swarmnet.kernels.dispatch import Dispatch, select_backend
from swarmnet.kernels.threads import parallel_map

__all__ = [
    "DECODE_DISPATCH",
    "ENCODE_DISPATCH",
    "REGION_ELEMENTS",
    "check_decode",
    "check_encode",
    "ef_sign_encode",
    "ef_sign_encode_cpu",
    "ef_sign_encode_reference",
    "sign_decode_accumulate",
    "sign_decode_accumulate_cpu",
    "sign_decode_accumulate_reference",
    "sign_decode_into",
    "sign_decode_into_cpu",
]

# Elements per region of the CPU path: 4 MB per fp32 buffer (grad, residual, one scratch) plus a byte per element
# of signs, within a typical L3. Smaller regions pay the per-call overhead of a dozen torch ops per region,
# larger ones spill (this size ran fastest at 25M elements).
REGION_ELEMENTS = 1 << 20

# Chunks up to this long are summed as a matrix-vector product with ones: torch.sum over rows this short is
# slower (and erratically so when the cores are shared); over longer rows it is as fast or faster.
_MV_MAX_CHUNK = 32

Encode = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
DecodeAccumulate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, float], None]


def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def check_encode(grad: torch.Tensor, residual: torch.Tensor, chunk_size: int) -> None:
    """``ValueError`` unless ``residual`` is contiguous, has ``grad``'s numel, shares no memory with it, and
    ``chunk_size >= 1``."""
    _check_chunk(chunk_size)
    if grad.numel() != residual.numel():
        raise ValueError(f"grad has {grad.numel()} elements, residual {residual.numel()}")
    if not residual.is_contiguous():
        raise ValueError("residual must be contiguous: it is updated in place as a flat array")
    if residual.numel() and residual.device.type != "meta" and grad.data_ptr() == residual.data_ptr():
        raise ValueError("grad and residual must not share memory")


def check_decode(acc: torch.Tensor, packed_bits: torch.Tensor, scales: torch.Tensor, chunk_size: int) -> None:
    """``KernelError`` unless ``packed_bits`` is uint8 on ``acc``'s device; ``ValueError`` unless ``acc`` is
    contiguous, ``chunk_size >= 1`` and the payload has ``ceil(n / 8)`` bytes and ``ceil(n / chunk_size)``
    scales for ``n = acc.numel()``, both 1-D."""
    if packed_bits.dtype != torch.uint8:
        raise KernelError(f"packed_bits must be uint8, got {packed_bits.dtype}")
    if packed_bits.device != acc.device:
        raise KernelError(f"packed_bits is on {packed_bits.device}, acc on {acc.device}")
    _check_chunk(chunk_size)
    n = acc.numel()
    if packed_bits.dim() != 1 or packed_bits.numel() != -(-n // 8):
        raise ValueError(f"{n} elements need {-(-n // 8)} packed bytes (1-D), got shape {tuple(packed_bits.shape)}")
    if scales.dim() != 1 or scales.numel() != -(-n // chunk_size):
        raise ValueError(
            f"{n} elements in chunks of {chunk_size} need {-(-n // chunk_size)} scales (1-D), "
            f"got shape {tuple(scales.shape)}"
        )
    if not acc.is_contiguous():
        raise ValueError("acc must be contiguous: it is updated in place as a flat array")


# --- reference: plain PyTorch, the definition of correct --------------------------------------------------


def _chunk_means_reference(v: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Mean ``|v|`` per chunk of flat ``v`` (the last chunk over its real elements only)."""
    n = v.numel()
    n_chunks = -(-n // chunk_size)
    padded = torch.cat([v.abs(), v.new_zeros(n_chunks * chunk_size - n)]).view(n_chunks, chunk_size)
    counts = torch.full((n_chunks,), chunk_size, dtype=torch.float32, device=v.device)
    if n_chunks:
        counts[-1] = n - (n_chunks - 1) * chunk_size
    sums = padded.sum(1)
    if not bool(torch.isfinite(sums).all()):  # an fp32 overflow; inputs that are not finite stay so in fp64
        return (padded.sum(1, dtype=torch.float64) / counts).float()
    return sums / counts


def _decode_reference(packed_bits: torch.Tensor, scales: torch.Tensor, n: int, chunk_size: int) -> torch.Tensor:
    """The full decoded fp32 tensor of ``n`` elements: ``+-scale`` per element."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed_bits.device)
    bits = ((packed_bits[:, None] >> shifts) & 1).reshape(-1)[:n].bool()
    per_element = scales.repeat_interleave(chunk_size)[:n]
    return torch.where(bits, per_element, -per_element)


@torch.no_grad()
def ef_sign_encode_reference(
    grad: torch.Tensor, residual: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch, the definition of correct (same arguments, results and effects as ``ef_sign_encode``)."""
    check_encode(grad, residual, chunk_size)
    n = grad.numel()
    v = grad.reshape(-1) + residual.view(-1)
    scales = _chunk_means_reference(v, chunk_size)
    positive = torch.cat([v >= 0, v.new_zeros((-n) % 8, dtype=torch.bool)]).view(-1, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32, device=v.device)
    packed = (positive.int() * weights).sum(1).to(torch.uint8)
    residual.view(-1).copy_(v - _decode_reference(packed, scales, n, chunk_size))
    return packed, scales


@torch.no_grad()
def sign_decode_accumulate_reference(
    acc: torch.Tensor, packed_bits: torch.Tensor, scales: torch.Tensor, chunk_size: int, weight: float = 1.0
) -> None:
    """Plain PyTorch, the definition of correct (same arguments and effects as ``sign_decode_accumulate``)."""
    check_decode(acc, packed_bits, scales, chunk_size)
    decoded = _decode_reference(packed_bits, scales, acc.numel(), chunk_size)
    acc.view(-1).add_(decoded * weight)


# --- cpu: region by region, temporaries reused and in cache ----------------------------------------------


def _regions(n: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of regions of about ``REGION_ELEMENTS`` covering ``n`` elements; every start is a
    multiple of both ``chunk_size`` (whole chunks per region) and 8 (whole bytes per region). A region holds at
    least ``lcm(chunk_size, 8)`` elements, so chunks far beyond ``REGION_ELEMENTS`` make temporaries that long."""
    step = chunk_size * 8 // math.gcd(chunk_size, 8)
    per = max(1, REGION_ELEMENTS // step) * step
    for start in range(0, n, per):
        yield start, min(start + per, n)


def _rows(values: torch.Tensor, chunk_size: int) -> list[torch.Tensor]:
    """A region's elements (starting on a chunk boundary) as 2-D views, one row per chunk: ``(k, chunk)`` for
    the whole chunks, then ``(1, tail)`` for a partial last chunk."""
    whole, tail = divmod(values.numel(), chunk_size)
    parts = [values[: whole * chunk_size].view(whole, chunk_size)] if whole else []
    if tail:
        parts.append(values[whole * chunk_size :].view(1, tail))
    return parts


def _columns(scales: torch.Tensor, parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """The entries of a region's ``scales`` as columns broadcasting against its ``_rows`` views."""
    out, first = [], 0
    for part in parts:
        out.append(scales[first : first + part.shape[0], None])
        first += part.shape[0]
    return out


def _sign_table() -> torch.Tensor:
    """``(256, 8)`` fp32: row ``b`` holds the eight decoded signs (+1.0 or -1.0) of byte ``b``, MSB first."""
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.bool_)
    return torch.from_numpy(np.where(bits, np.float32(1), np.float32(-1)))


# Bytes to signs by table lookup: one index_select writes 8 floats per byte, faster than unpacking to
# bools and converting them (torch's bool paths are not vectorised).
_SIGNS = _sign_table()


def _lookup_signs(packed: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Write the +-1.0 signs of ``packed`` (uint8) into ``out`` (8 floats per byte); ``index`` is int64
    scratch of at least ``packed.numel()``. Returns ``out`` as a flat view."""
    nb = packed.numel()
    torch.index_select(_SIGNS, 0, index[:nb].copy_(packed), out=out[: 8 * nb].view(nb, 8))
    return out[: 8 * nb]


def _scratch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An fp32 buffer for a region of ``size`` elements rounded up to whole bytes, and int64 byte indices.

    Fresh per region, as regions run on several threads at once; after the first, the allocator hands back
    the same freed memory, so this costs no more than buffers kept for the whole call."""
    return torch.empty(-(-size // 8) * 8), torch.empty(-(-size // 8), dtype=torch.int64)


@torch.no_grad()
def ef_sign_encode_cpu(
    grad: torch.Tensor, residual: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast CPU version of ``ef_sign_encode`` (same arguments, results and effects); regions run in parallel
    (``parallel_map``)."""
    check_encode(grad, residual, chunk_size)
    n = grad.numel()
    g, r = grad.reshape(-1), residual.view(-1)
    scales = empty(-(-n // chunk_size), torch.float32)
    packed = empty(-(-n // 8), torch.uint8)
    ones = torch.ones(min(chunk_size, _MV_MAX_CHUNK))

    def encode_region(region: tuple[int, int]) -> None:
        start, stop = region
        size = stop - start
        work, index = _scratch(size)
        v = r[start:stop].add_(g[start:stop])  # v lives in the residual from here on: the one pass over memory
        t = torch.abs(v, out=work[:size])
        t_rows = _rows(t, chunk_size)
        s_cols = _columns(scales[start // chunk_size :], t_rows)
        for tv, sv in zip(t_rows, s_cols, strict=True):
            if tv.shape[1] <= _MV_MAX_CHUNK:  # rows this short: BLAS's matrix-vector product sums faster
                torch.mv(tv, ones[: tv.shape[1]], out=sv.view(-1))
            else:
                torch.sum(tv, 1, keepdim=True, out=sv)
            sv.div_(tv.shape[1])
            # An fp32 overflow (or a non-finite input): redo in fp64, which is slower, so only here. Summing the
            # scales is a cheaper test than isfinite().all(); its own rare overflow only costs the redo.
            if not math.isfinite(float(sv.sum())):
                sv.copy_(tv.sum(1, keepdim=True, dtype=torch.float64).div_(tv.shape[1]))
        positive = np.greater_equal(v.numpy(), np.float32(0))  # faster than torch.ge here
        region_bytes = packed[start // 8 : -(-stop // 8)]
        region_bytes.numpy()[:] = np.packbits(positive)
        signs = _lookup_signs(region_bytes, index, work)[:size]
        for vv, tv, sv in zip(_rows(v, chunk_size), _rows(signs, chunk_size), s_cols, strict=True):
            # v - (+-1 * s): the product is exact, so this rounds once, exactly like the reference's v - decode.
            vv.addcmul_(tv, sv, value=-1)

    parallel_map(encode_region, list(_regions(n, chunk_size)))
    return packed, scales


@torch.no_grad()
def sign_decode_accumulate_cpu(
    acc: torch.Tensor, packed_bits: torch.Tensor, scales: torch.Tensor, chunk_size: int, weight: float = 1.0
) -> None:
    """Fast CPU version of ``sign_decode_accumulate`` (same arguments and effects); regions run in parallel."""
    check_decode(acc, packed_bits, scales, chunk_size)
    n, flat = acc.numel(), acc.view(-1)
    weighted = scales * weight  # fp32(weight) * scale: the rounding of the reference's decoded * weight

    def accumulate_region(region: tuple[int, int]) -> None:
        start, stop = region
        work, index = _scratch(stop - start)
        signs = _lookup_signs(packed_bits[start // 8 : -(-stop // 8)], index, work)[: stop - start]
        a_rows = _rows(flat[start:stop], chunk_size)
        for av, tv, wv in zip(
            a_rows, _rows(signs, chunk_size), _columns(weighted[start // chunk_size :], a_rows), strict=True
        ):
            av.addcmul_(tv, wv)  # acc + (+-1 * w*s): the product is exact, so one rounding, as in the reference

    parallel_map(accumulate_region, list(_regions(n, chunk_size)))


@torch.no_grad()
def sign_decode_into_cpu(out: torch.Tensor, packed_bits: torch.Tensor, scales: torch.Tensor, chunk_size: int) -> None:
    """``out[...] = decode(packed_bits, scales)`` on the CPU without reading ``out``: the signs are looked up
    straight into it and each chunk is scaled in place, one pass where zeroing it and accumulating takes
    two. ``+-1 * scale`` is exact, so the values are those of
    every other decode, except that a zero scale gives ``-0.0`` where the bit is 0 (as the reference does).
    Regions run in parallel."""
    check_decode(out, packed_bits, scales, chunk_size)
    n, flat = out.numel(), out.view(-1)

    def decode_region(span: tuple[int, int]) -> None:
        start, stop = span
        region, packed = flat[start:stop], packed_bits[start // 8 : -(-stop // 8)]
        work, index = _scratch(stop - start)
        if (stop - start) % 8:  # the last region ends inside a byte: its signs go through the scratch buffer
            region.copy_(_lookup_signs(packed, index, work)[: stop - start])
        else:
            _lookup_signs(packed, index, region)
        rows = _rows(region, chunk_size)
        for rv, sv in zip(rows, _columns(scales[start // chunk_size :], rows), strict=True):
            rv.mul_(sv)

    parallel_map(decode_region, list(_regions(n, chunk_size)))


def sign_decode_into(out: torch.Tensor, packed_bits: torch.Tensor, scales: torch.Tensor, chunk_size: int) -> None:
    """``out[...] = decode(packed_bits, scales)``: the CPU path writes it directly, other devices zero ``out``
    and accumulate. Same arguments and errors as ``sign_decode_accumulate`` (``acc`` is ``out``)."""
    if out.device.type == "cpu" and packed_bits.device.type == "cpu" and scales.device.type == "cpu":
        sign_decode_into_cpu(out, packed_bits, scales, chunk_size)
        return
    check_decode(out, packed_bits, scales, chunk_size)
    out.zero_()
    sign_decode_accumulate(out, packed_bits, scales, chunk_size)


# --- dispatch ------------------------------------------------------------------------------------------------


def _load_encode() -> Encode:
    from swarmnet.kernels.triton_sign import ef_sign_encode_triton

    return ef_sign_encode_triton


def _load_decode() -> DecodeAccumulate:
    from swarmnet.kernels.triton_sign import sign_decode_accumulate_triton

    return sign_decode_accumulate_triton


ENCODE_DISPATCH: Dispatch[Encode] = Dispatch(
    "ef_sign_encode", reference=ef_sign_encode_reference, cpu=ef_sign_encode_cpu, load_triton=_load_encode
)
DECODE_DISPATCH: Dispatch[DecodeAccumulate] = Dispatch(
    "sign_decode_accumulate",
    reference=sign_decode_accumulate_reference,
    cpu=sign_decode_accumulate_cpu,
    load_triton=_load_decode,
)


def ef_sign_encode(grad: torch.Tensor, residual: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``v = grad + residual`` as packed sign bits and per-chunk mean ``|v|``; leave the error in
    ``residual``.

    Args:
        grad: fp32 tensor of any shape and ``n`` elements; not modified.
        residual: contiguous fp32 tensor of ``n`` elements (any shape), distinct from ``grad``; overwritten in
            place with ``v - decode(bits, scales)``.
        chunk_size: elements per scale, any positive int.

    Returns:
        ``(packed_bits, scales)``: uint8 of ``ceil(n / 8)`` bytes (bit ``7 - i % 8`` of byte ``i // 8`` is
        ``v[i] >= 0``, unused bits zero) and fp32 of ``ceil(n / chunk_size)``, on ``grad``'s device.
        The exact math and rounding are in the module docstring.

    Raises:
        KernelError: a dtype other than fp32, tensors on different devices, or no backend for the device.
        ValueError: mismatched numel, a non-contiguous residual, shared memory, or ``chunk_size < 1``.
    """
    return ENCODE_DISPATCH.impl(select_backend(grad, residual))(grad, residual, chunk_size)


def sign_decode_accumulate(
    acc: torch.Tensor, packed_bits: torch.Tensor, scales: torch.Tensor, chunk_size: int, weight: float = 1.0
) -> None:
    """``acc += weight * decode(packed_bits, scales)`` in place, without building the decoded tensor.

    Args:
        acc: contiguous fp32 tensor of any shape and ``n`` elements, updated in place as
            ``acc[i] + fp32(fp32(weight) * (+-scales[i // chunk_size]))``.
        packed_bits: 1-D uint8 of ``ceil(n / 8)`` bytes, as returned by ``ef_sign_encode``.
        scales: 1-D fp32 of ``ceil(n / chunk_size)`` scales.
        chunk_size: elements per scale, as used to encode.
        weight: the factor applied to the decoded values.

    Raises:
        KernelError: a dtype other than fp32 (uint8 for ``packed_bits``), mixed devices, or no backend for the
            device.
        ValueError: sizes that do not match ``n`` and ``chunk_size``, a non-contiguous ``acc``, or
            ``chunk_size < 1``; raised before ``acc`` is touched.
    """
    DECODE_DISPATCH.impl(select_backend(acc, scales))(acc, packed_bits, scales, chunk_size, weight)
