"""blockwise_quantize / blockwise_dequantize_accumulate: the reference defines the math; the CPU and Triton
paths reproduce its integers, scales and residuals bit for bit (rounding ties included: every path rounds
``v * inverse`` half to even from the same fp32 product, so no tie tolerance is needed)."""

from __future__ import annotations

import pytest
import torch

from swarmnet.errors import KernelError
from swarmnet.kernels.blockwise import (
    REGION_ELEMENTS,
    blockwise_dequantize_accumulate,
    blockwise_quantize,
    unpack_values,
)
from swarmnet.kernels.dispatch import force_backend, triton_available

needs_triton = pytest.mark.skipif(not triton_available(), reason="the triton package is not installed")
# Under force_backend("triton") CPU tensors only work in the interpreter (conftest sets it without CUDA).
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BLOCK_SIZES = [1, 2, 37, 64, 1024, 4096]  # 37: odd, so 4-bit blocks straddle bytes

Quantized = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def gradient_like(numel: int, seed: int) -> torch.Tensor:
    """Normal values with magnitudes spread over decades, plus an all-zero stretch (zero blocks)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(numel, generator=generator) * torch.exp(2 * torch.randn(numel, generator=generator))
    x[numel // 3 : numel // 3 + 70] = 0.0
    return x


def quantize(
    backend: str, x: torch.Tensor, block_size: int, bits: int, residual: torch.Tensor | None, device: str = "cpu"
) -> Quantized:
    """Run one backend on copies (on ``device``); results come back on the CPU."""
    res = None if residual is None else residual.clone().to(device)
    with force_backend(backend):
        values, scales = blockwise_quantize(x.to(device), block_size, bits, res)
    return values.cpu(), scales.cpu(), None if res is None else res.cpu()


def assert_same(got: Quantized, expected: Quantized) -> None:
    for name, ours, ref in zip(("values", "scales", "residual"), got, expected, strict=True):
        if ref is None:
            assert ours is None
            continue
        assert ours is not None
        assert ours.dtype == ref.dtype, name
        assert ours.shape == ref.shape, name
        assert torch.equal(ours, ref), f"{name}: {(ours != ref).sum().item()} of {ref.numel()} elements differ"
    assert torch.isfinite(got[1]).all()
    assert got[2] is None or torch.isfinite(got[2]).all()


def check_parity(backend: str, numel: int, block_size: int, bits: int, feedback: bool, device: str = "cpu") -> None:
    x = gradient_like(numel, seed=numel + block_size + bits)
    residual = 0.1 * gradient_like(numel, seed=numel + 1) if feedback else None
    expected = quantize("reference", x, block_size, bits, residual)
    assert_same(quantize(backend, x, block_size, bits, residual, device), expected)


def decode(values: torch.Tensor, scales: torch.Tensor, numel: int, block_size: int, bits: int) -> torch.Tensor:
    return unpack_values(values, numel, bits) * scales.repeat_interleave(block_size)[:numel]


# ---------------------------------------------------------------------------------------- what the math is


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("block_size", [1, 37, 4096])
def test_reference_meets_the_error_bound_and_layout(block_size: int, bits: int) -> None:
    numel = 3 * block_size + 5
    x = gradient_like(numel, seed=block_size)
    with force_backend("reference"):
        values, scales = blockwise_quantize(x.view(-1, 1), block_size, bits)  # any shape, read flat
    n_blocks, qmax = -(-numel // block_size), 127 if bits == 8 else 7
    assert scales.shape == (n_blocks,)
    assert scales.dtype == torch.float32
    assert values.shape == ((numel,) if bits == 8 else ((numel + 1) // 2,))
    assert values.dtype == (torch.int8 if bits == 8 else torch.uint8)
    q = unpack_values(values, numel, bits)
    assert q.abs().max() <= qmax
    per_element = scales.repeat_interleave(block_size)[:numel]
    assert (q * per_element - x).abs().le(per_element / 2 * (1 + 1e-6)).all()  # half a step, plus fp32 rounding
    absmax = torch.nn.functional.pad(x.abs(), (0, n_blocks * block_size - numel)).view(n_blocks, -1).amax(1)
    assert (scales * qmax <= absmax).all()  # never decodes past the input
    assert ((scales == 0) == (absmax == 0)).all()
    if bits == 4 and numel % 2:
        assert values[-1] >> 4 == 8  # the padding nibble of an odd count


@pytest.mark.parametrize("backend", ["reference", "cpu", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("bits", [8, 4])
def test_ties_round_half_to_even_and_zero_blocks_are_zero(backend: str, bits: int) -> None:
    qmax = 127.0 if bits == 8 else 7.0
    absmax = torch.tensor([qmax])  # inverse = fl(1 / qmax) * qmax is exactly 1 for both widths
    assert torch.equal(torch.reciprocal(absmax) * qmax, torch.ones(1)), "the tie inputs would not be ties"
    ties = [qmax, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 4.5, 0.0]
    x = torch.tensor(ties + [0.0] * 10)  # block 0: the ties; block 1: all zeros
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    values, scales, _ = quantize(backend, x, 10, bits, None, device)
    expected = torch.tensor([qmax, 0, 2, 2, 0, -2, -2, 4, 4, 0] + [0] * 10)
    assert torch.equal(unpack_values(values, 20, bits), expected)
    assert scales.tolist() == [1.0, 0.0]


# ---------------------------------------------------------------------------------------- CPU path parity


@pytest.mark.parametrize("feedback", [False, True], ids=["plain", "feedback"])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("numel", [0, 1, 37, 1000, 3 * 4096 + 5])
def test_cpu_quantize_matches_reference(numel: int, block_size: int, bits: int, feedback: bool) -> None:
    check_parity("cpu", numel, block_size, bits, feedback)


@pytest.mark.parametrize(("block_size", "bits"), [(4096, 8), (37, 4), (1, 4)])
def test_cpu_quantize_matches_reference_across_regions(block_size: int, bits: int) -> None:
    # Several regions of the CPU path, the last ending in a partial block; odd blocks and odd counts for int4.
    check_parity("cpu", 2 * REGION_ELEMENTS + 4097, block_size, bits, feedback=True)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("block_size", [1, 37, 4096])
def test_feedback_residual_is_exactly_what_decoding_loses(block_size: int, bits: int) -> None:
    x, residual = gradient_like(50_001, seed=1), 0.5 * gradient_like(50_001, seed=2)
    v = x + residual
    values, scales = blockwise_quantize(x, block_size, bits, residual)
    decoded = decode(values, scales, x.numel(), block_size, bits)
    # v - fl(q * scale) is an exact subtraction (both within a factor 2, or q = 0): nothing is lost or made up.
    assert torch.equal(decoded.double() + residual.double(), v.double())


def test_strided_input_and_shaped_residual() -> None:
    x = gradient_like(60 * 70, seed=4).view(60, 70)
    residual = gradient_like(70 * 60, seed=5).view(70, 60)
    expected = quantize("reference", x.t().contiguous(), 64, 4, residual)
    assert_same(quantize("cpu", x.t(), 64, 4, residual), expected)


@pytest.mark.parametrize("weight", [1.0, -0.3])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize(
    ("numel", "block_size"),
    [(n, b) for n in (0, 1, 37, 3 * 4096 + 5) for b in BLOCK_SIZES]
    + [(REGION_ELEMENTS + 4097, 37), (REGION_ELEMENTS + 4097, 4096)],  # several regions, odd and even blocks
)
def test_cpu_dequantize_accumulate_matches_reference(numel: int, block_size: int, bits: int, weight: float) -> None:
    check_accumulate("cpu", numel, block_size, bits, weight)


def check_accumulate(backend: str, numel: int, block_size: int, bits: int, weight: float, device: str = "cpu") -> None:
    with force_backend("reference"):
        values, scales = blockwise_quantize(gradient_like(numel, seed=numel), block_size, bits)
    acc = gradient_like(numel, seed=numel + 7)
    expected = acc.clone()
    with force_backend("reference"):
        blockwise_dequantize_accumulate(expected, values, scales, block_size, bits, weight)
    got = acc.to(device)
    with force_backend(backend):
        blockwise_dequantize_accumulate(got, values.to(device), scales.to(device), block_size, bits, weight)
    got = got.cpu()
    assert torch.isfinite(got).all()
    if weight == 1.0:
        assert torch.equal(got, expected)  # acc + fl(q * scale): one rounding on every path
    else:
        # acc + weight * fl(q * scale) may be one FMA or two roundings: at most an ulp of the larger term apart.
        term = (weight * decode(values, scales, numel, block_size, bits)).abs()
        assert ((got - expected).abs() <= 2**-23 * torch.maximum(acc.abs() + term, expected.abs())).all()


def test_round_trip_through_dequantize_accumulate_is_within_half_a_step() -> None:
    x = gradient_like(10_000, seed=9)
    for bits in (8, 4):
        values, scales = blockwise_quantize(x, 64, bits)
        acc = torch.zeros(100, 100)
        blockwise_dequantize_accumulate(acc, values, scales, 64, bits)
        steps = scales.repeat_interleave(64)[: x.numel()]
        assert ((acc.view(-1) - x).abs() <= steps / 2 * (1 + 1e-6)).all()


# ---------------------------------------------------------------------------------------- Triton path parity


@needs_triton
@pytest.mark.parametrize("feedback", [False, True], ids=["plain", "feedback"])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("numel", [0, 1, 5, 2 * 4096 + 3])
def test_triton_quantize_matches_reference(numel: int, block_size: int, bits: int, feedback: bool) -> None:
    check_parity("triton", numel, block_size, bits, feedback, TRITON_DEVICE)


@needs_triton
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("block_size", [37, 64])
def test_triton_quantize_looping_over_long_blocks(monkeypatch: pytest.MonkeyPatch, block_size: int, bits: int) -> None:
    # Blocks longer than the tile take the two-pass loop; a 32-element tile reaches it at small sizes.
    triton_blockwise = pytest.importorskip("swarmnet.kernels.triton_blockwise")
    monkeypatch.setattr(triton_blockwise, "INTERPRETER_TILE", 32)
    monkeypatch.setattr(triton_blockwise, "GPU_TILE", 32)
    check_parity("triton", 3 * block_size + 7, block_size, bits, True, TRITON_DEVICE)


@needs_triton
@pytest.mark.parametrize("weight", [1.0, -0.3])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize(("numel", "block_size"), [(0, 4), (1, 1), (5, 2), (2 * 4096 + 3, 37), (2 * 4096 + 3, 4096)])
def test_triton_dequantize_accumulate_matches_reference(numel: int, block_size: int, bits: int, weight: float) -> None:
    check_accumulate("triton", numel, block_size, bits, weight, TRITON_DEVICE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_take_the_triton_path_by_default() -> None:
    x, residual = gradient_like(100_003, seed=11), gradient_like(100_003, seed=12)
    expected = quantize("reference", x, 4096, 4, residual)
    res = residual.cuda()
    values, scales = blockwise_quantize(x.cuda(), 4096, 4, res)
    assert_same((values.cpu(), scales.cpu(), res.cpu()), expected)


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bad_arguments_are_value_errors(backend: str) -> None:
    x = torch.ones(10)
    with force_backend(backend):
        with pytest.raises(ValueError, match="bits"):
            blockwise_quantize(x, 4, 5)
        with pytest.raises(ValueError, match="block_size"):
            blockwise_quantize(x, 0, 8)
        with pytest.raises(ValueError, match="residual has 9"):
            blockwise_quantize(x, 4, 8, torch.zeros(9))
        with pytest.raises(ValueError, match="contiguous"):
            blockwise_quantize(x, 4, 8, torch.zeros(20)[::2])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_dequantize_checks_everything_before_writing(backend: str) -> None:
    acc = torch.ones(10)
    values, scales = blockwise_quantize(torch.arange(10.0), 4, 4)
    with force_backend(backend):
        with pytest.raises(ValueError, match="values for 10 elements need 5, got 4"):
            blockwise_dequantize_accumulate(acc, values[:4], scales, 4, 4)
        with pytest.raises(ValueError, match="need 3 scales, got 2"):
            blockwise_dequantize_accumulate(acc, values, scales[:2], 4, 4)
        with pytest.raises(ValueError, match="need 10, got 5"):
            blockwise_dequantize_accumulate(acc, values, scales, 4, 8)  # bits disagree with the layout
        with pytest.raises(KernelError, match=r"must be torch\.int8"):
            blockwise_dequantize_accumulate(acc, torch.zeros(10, dtype=torch.uint8), scales, 4, 8)
        with pytest.raises(ValueError, match="contiguous"):
            blockwise_dequantize_accumulate(torch.ones(20)[::2], values, scales, 4, 4)
    assert torch.equal(acc, torch.ones(10))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float16])
def test_unsupported_dtypes_are_kernel_errors(dtype: torch.dtype) -> None:
    with pytest.raises(KernelError, match="unsupported dtype"):
        blockwise_quantize(torch.zeros(4, dtype=dtype), 2, 8)
    with pytest.raises(KernelError, match="unsupported dtype"):
        blockwise_quantize(torch.zeros(4), 2, 8, torch.zeros(4, dtype=dtype))
    with pytest.raises(KernelError, match="unsupported dtype"):
        blockwise_dequantize_accumulate(
            torch.zeros(4, dtype=dtype), torch.zeros(4, dtype=torch.int8), torch.zeros(2), 2, 8
        )


def test_the_cpu_path_refuses_other_devices() -> None:
    meta = torch.empty(4, device="meta")
    with force_backend("cpu"), pytest.raises(KernelError, match="no cpu implementation for meta"):
        blockwise_quantize(meta, 2, 8)
    with force_backend("cpu"), pytest.raises(KernelError, match="no cpu implementation for meta"):
        blockwise_dequantize_accumulate(meta, torch.zeros(4, dtype=torch.int8, device="meta"), meta[:2], 2, 8)
    with pytest.raises(KernelError, match="several devices"):
        blockwise_quantize(torch.zeros(4), 2, 8, meta)
