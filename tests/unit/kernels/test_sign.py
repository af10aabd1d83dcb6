"""ef_sign_encode and sign_decode_accumulate: the CPU and Triton paths against the reference and numpy.

Bits and decode-accumulate results are integers or single-rounding fp32 expressions, compared bit for bit.
Scales are fp32 sums whose rounding depends on the summation order: compared to the reference and to an fp64
numpy mean within 1e-5 relative. Each residual must be exactly ``v - decode`` of its own bits and scales, and
within 1e-5 of its chunk's scale of the reference's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swarmnet.errors import KernelError
from swarmnet.kernels import sign
from swarmnet.kernels.dispatch import force_backend, triton_available
from swarmnet.kernels.sign import (
    ef_sign_encode,
    ef_sign_encode_reference,
    sign_decode_accumulate,
    sign_decode_accumulate_reference,
    sign_decode_into,
)

needs_triton = pytest.mark.skipif(not triton_available(), reason="the triton package is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CHUNKS = [1, 5, 8, 12, 24, 64, 100, 4096]  # multiples of 8 (powers of 2 or not) and not
SIZES = [0, 1, 7, 8, 9, 1000, 8195]


def _inputs(n: int, seed: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """grad and residual of mixed magnitudes, with exact zeros of both signs in v = grad + residual."""
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randn(n, generator=gen) * torch.exp(torch.randn(n, generator=gen))
    residual = torch.randn(n, generator=gen) * 0.5
    residual[::11] = -grad[::11]  # v = +0.0
    grad[5::13], residual[5::13] = -0.0, -0.0  # v = -0.0, which counts as >= 0
    return grad.to(device), residual.to(device)


def _numpy_oracle(v: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed bits and fp64 chunk means of |v|, independently of torch."""
    starts = np.arange(0, v.size, chunk)
    sums = np.add.reduceat(np.abs(v.astype(np.float64)), starts) if v.size else np.zeros(0)
    return np.packbits(v >= 0), sums / np.minimum(chunk, v.size - starts)


def _decode_numpy(bits: np.ndarray, scales: np.ndarray, n: int, chunk: int) -> np.ndarray:
    s = np.repeat(scales, chunk)[:n]
    return np.where(np.unpackbits(bits, count=n).astype(bool), s, -s)


def _check_encode(backend: str, n: int, chunk: int, seed: int, device: str = "cpu") -> None:
    grad, residual = _inputs(n, seed, device)
    grad_before, v = grad.clone(), grad + residual
    ref_residual = residual.clone()
    ref_bits, ref_scales = ef_sign_encode_reference(grad, ref_residual, chunk)
    with force_backend(backend):
        bits, scales = ef_sign_encode(grad, residual, chunk)
    assert torch.equal(grad, grad_before)  # grad is read only
    assert (bits.dtype, bits.shape, bits.device) == (torch.uint8, (-(-n // 8),), grad.device)
    assert (scales.dtype, scales.shape, scales.device) == (torch.float32, (-(-n // chunk),), grad.device)
    oracle_bits, oracle_means = _numpy_oracle(v.cpu().numpy(), chunk)
    assert np.array_equal(bits.cpu().numpy(), oracle_bits)
    assert np.array_equal(ref_bits.cpu().numpy(), oracle_bits)
    np.testing.assert_allclose(scales.cpu().numpy(), oracle_means, rtol=1e-5, atol=0)
    torch.testing.assert_close(scales, ref_scales, rtol=1e-5, atol=0)
    # The residual is v - decode(own bits, own scales), rounded once: exactly.
    decoded = _decode_numpy(bits.cpu().numpy(), scales.cpu().numpy(), n, chunk)
    assert np.array_equal(residual.cpu().numpy(), v.cpu().numpy() - decoded)
    per_element = ref_scales.repeat_interleave(chunk)[:n]
    assert bool(((residual - ref_residual).abs() <= 1e-5 * per_element).all())
    assert not bool(residual.isnan().any() or scales.isnan().any())


def _check_decode(backend: str, n: int, chunk: int, seed: int, device: str = "cpu") -> None:
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 256, (-(-n // 8),), dtype=torch.uint8, generator=gen)
    if n % 8:
        bits[-1] &= 0xFF << (8 - n % 8)  # unused bits are zero in real payloads
    scales = torch.rand(-(-n // chunk), generator=gen) * 3
    acc = torch.randn(n, generator=gen)
    for weight in (1.0, -0.37, 2.5):
        expected = acc.numpy() + (np.float32(weight) * _decode_numpy(bits.numpy(), scales.numpy(), n, chunk))
        ref = acc.clone()
        sign_decode_accumulate_reference(ref, bits, scales, chunk, weight)
        assert np.array_equal(ref.numpy(), expected.astype(np.float32))
        out = acc.to(device)
        with force_backend(backend):
            sign_decode_accumulate(out, bits.to(device), scales.to(device), chunk, weight)
        assert torch.equal(out.cpu(), ref)


def _check_decode_into(n: int, chunk: int, seed: int) -> None:
    """``sign_decode_into`` writes exactly the decoded values, whatever ``out`` held (NaN here)."""
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 256, (-(-n // 8),), dtype=torch.uint8, generator=gen)
    scales = torch.rand(-(-n // chunk), generator=gen) * 3
    scales[::3] = 0.0  # a zero scale decodes to zeros
    out = torch.full((n,), float("nan"))
    sign_decode_into(out, bits, scales, chunk)
    expected = _decode_numpy(bits.numpy(), scales.numpy(), n, chunk)
    assert np.array_equal(out.numpy(), expected)
    zeroed = torch.zeros(n)
    sign_decode_accumulate(zeroed, bits, scales, chunk)  # the slower way it replaces: same values
    assert torch.equal(out, zeroed)


@pytest.fixture
def small_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions of 64 elements, so that small tensors cross many region boundaries."""
    monkeypatch.setattr(sign, "REGION_ELEMENTS", 64)


@pytest.fixture
def small_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 elements per Triton program: many programs and tiled long chunks at interpreter-friendly sizes."""
    from swarmnet.kernels import triton_sign

    monkeypatch.setattr(triton_sign, "INTERPRETER_ELEMENTS_PER_PROGRAM", 64)
    monkeypatch.setattr(triton_sign, "ELEMENTS_PER_PROGRAM", 64)


# --- CPU path -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("n", SIZES)
def test_cpu_encode_matches_reference(n: int, chunk: int) -> None:
    _check_encode("cpu", n, chunk, seed=n * 31 + chunk)


@pytest.mark.parametrize("chunk", [5, 8, 64, 4096])
def test_cpu_encode_across_regions(chunk: int, small_regions: None) -> None:
    for n in (63, 64, 65, 1000):
        _check_encode("cpu", n, chunk, seed=n + chunk)


@pytest.mark.parametrize("chunk", [8, 13, 4096])
def test_cpu_encode_large(chunk: int) -> None:
    _check_encode("cpu", 1_100_003, chunk, seed=chunk)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("n", SIZES)
def test_cpu_decode_accumulate_matches_reference(n: int, chunk: int) -> None:
    _check_decode("cpu", n, chunk, seed=n * 17 + chunk)


@pytest.mark.parametrize("chunk", [5, 8, 4096])
def test_cpu_decode_accumulate_across_regions(chunk: int, small_regions: None) -> None:
    for n in (63, 64, 65, 1000):
        _check_decode("cpu", n, chunk, seed=n + chunk)


@pytest.mark.parametrize("chunk", [8, 13, 4096])
def test_cpu_decode_accumulate_large(chunk: int) -> None:
    _check_decode("cpu", 1_100_003, chunk, seed=chunk)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("n", SIZES)
def test_cpu_decode_into_writes_the_decoded_values(n: int, chunk: int) -> None:
    _check_decode_into(n, chunk, seed=n * 13 + chunk)


@pytest.mark.parametrize("chunk", [5, 8, 4096])
def test_cpu_decode_into_across_regions(chunk: int, small_regions: None) -> None:
    for n in (63, 64, 65, 1000):
        _check_decode_into(n, chunk, seed=n + chunk)


def test_cpu_decode_into_large() -> None:
    _check_decode_into(1_100_003, 4096, seed=3)


def test_decode_into_checks_sizes_before_writing() -> None:
    out = torch.full((16,), 7.0)
    with pytest.raises(ValueError, match="packed bytes"):
        sign_decode_into(out, torch.zeros(3, dtype=torch.uint8), torch.ones(2), 8)
    assert bool((out == 7.0).all())


@pytest.mark.parametrize("backend", ["reference", "cpu", pytest.param("triton", marks=needs_triton)])
def test_zero_chunks_and_fp32_overflow(backend: str) -> None:
    grad = torch.zeros(40)
    grad[16:24] = -0.0
    grad[24:] = torch.tensor([3e38, -3e38] * 8)  # |v| sums past fp32 max: the mean must still be finite
    residual = torch.zeros(40)
    residual[16:24] = -0.0  # v = -0.0 + -0.0 = -0.0
    with force_backend(backend):
        bits, scales = ef_sign_encode(grad, residual, 8)
    assert bits[:3].tolist() == [255] * 3  # zeros of either sign are >= 0
    assert bits[3:].tolist() == [0b10101010] * 2
    assert scales.tolist() == [0.0, 0.0, 0.0, pytest.approx(3e38, rel=1e-6), pytest.approx(3e38, rel=1e-6)]
    assert bool(torch.isfinite(residual).all())
    assert bool((residual[:24] == 0).all())


@pytest.mark.parametrize("backend", ["cpu", pytest.param("triton", marks=needs_triton)])
def test_any_shapes_with_equal_numel(backend: str) -> None:
    grad, residual = _inputs(105, seed=2)
    ref_residual = residual.clone()
    ref_bits, ref_scales = ef_sign_encode_reference(grad, ref_residual, 8)
    # grad (3, 5, 7) laid out transposed in memory (not contiguous); residual (15, 7); acc (7, 15).
    grad_3d = grad.view(3, 5, 7).transpose(0, 2).contiguous().transpose(0, 2)
    with force_backend(backend):
        bits, scales = ef_sign_encode(grad_3d, residual.view(15, 7), 8)
        acc = torch.zeros(7, 15)
        sign_decode_accumulate(acc, bits, scales, 8, 2.0)
    assert torch.equal(bits, ref_bits)
    torch.testing.assert_close(scales, ref_scales, rtol=1e-5, atol=0)
    torch.testing.assert_close(residual, ref_residual, rtol=0, atol=1e-5 * float(ref_scales.max()))
    expected = _decode_numpy(bits.numpy(), scales.numpy(), 105, 8) * np.float32(2.0)
    assert np.array_equal(acc.view(-1).numpy(), expected)


def test_encode_then_decode_recovers_v() -> None:
    grad, residual = _inputs(5000, seed=1)
    v = grad + residual
    bits, scales = ef_sign_encode(grad, residual, 64)
    acc = residual.clone()
    sign_decode_accumulate(acc, bits, scales, 64)
    torch.testing.assert_close(acc, v, rtol=0, atol=1e-5 * float(scales.max()))


# --- Triton path (TRITON_INTERPRET=1 without a GPU: each program costs ~1.5 ms, so sizes stay small) ---------


@needs_triton
@pytest.mark.parametrize("chunk", CHUNKS)
def test_triton_encode_matches_reference(chunk: int) -> None:
    for n in SIZES:
        _check_encode("triton", n, chunk, seed=n * 7 + chunk)


@needs_triton
@pytest.mark.parametrize("chunk", [5, 8, 24, 100, 4096])
def test_triton_encode_many_programs(chunk: int, small_programs: None) -> None:
    for n in (63, 200, 515):  # several programs; chunk 100 > 64 takes several tiles per chunk
        _check_encode("triton", n, chunk, seed=n + chunk)


@needs_triton
@pytest.mark.parametrize("chunk", [1, 5, 8, 64, 4096])
def test_triton_decode_accumulate_matches_reference(chunk: int) -> None:
    for n in SIZES:
        _check_decode("triton", n, chunk, seed=n * 3 + chunk)


@needs_triton
def test_triton_decode_accumulate_many_programs(small_programs: None) -> None:
    for n, chunk in ((63, 8), (200, 5), (515, 64)):
        _check_decode("triton", n, chunk, seed=n)


@needs_cuda
@needs_triton
@pytest.mark.gpu
@pytest.mark.parametrize("chunk", [5, 8, 64, 4096, 10000])
def test_cuda_matches_reference(chunk: int) -> None:
    for n in (1, 1000, 1_000_003):
        _check_encode("triton", n, chunk, seed=n + chunk, device="cuda")
        _check_decode("triton", n, chunk, seed=n + chunk, device="cuda")


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float16])
def test_unsupported_dtypes_are_kernel_errors(dtype: torch.dtype) -> None:
    with pytest.raises(KernelError, match="unsupported dtype"):
        ef_sign_encode(torch.zeros(8, dtype=dtype), torch.zeros(8, dtype=dtype), 8)
    with pytest.raises(KernelError, match="unsupported dtype"):
        sign_decode_accumulate(torch.zeros(8, dtype=dtype), torch.zeros(1, dtype=torch.uint8), torch.ones(1), 8)
    with pytest.raises(KernelError, match="packed_bits must be uint8"):
        sign_decode_accumulate(torch.zeros(8), torch.zeros(1, dtype=torch.int8), torch.ones(1), 8)


@pytest.mark.parametrize("backend", ["cpu", pytest.param("triton", marks=needs_triton)])
def test_meta_tensors_have_no_cpu_or_triton_path(backend: str) -> None:
    meta = torch.empty(8, device="meta")
    with force_backend(backend), pytest.raises(KernelError):
        ef_sign_encode(meta, torch.empty(8, device="meta"), 8)
    with force_backend(backend), pytest.raises(KernelError):
        sign_decode_accumulate(
            meta, torch.empty(1, dtype=torch.uint8, device="meta"), torch.empty(1, device="meta"), 8
        )
    with force_backend(backend), pytest.raises(KernelError, match="several devices"):
        ef_sign_encode(torch.zeros(8), meta, 8)


@pytest.mark.parametrize("backend", ["reference", "cpu", pytest.param("triton", marks=needs_triton)])
def test_bad_encode_arguments_are_value_errors(backend: str) -> None:
    grad = torch.randn(16)
    with force_backend(backend):
        with pytest.raises(ValueError, match="chunk_size"):
            ef_sign_encode(grad, torch.zeros(16), 0)
        with pytest.raises(ValueError, match="residual 15"):
            ef_sign_encode(grad, torch.zeros(15), 8)
        with pytest.raises(ValueError, match="contiguous"):
            ef_sign_encode(grad, torch.zeros(32)[::2], 8)
        with pytest.raises(ValueError, match="share memory"):
            ef_sign_encode(grad, grad, 8)


@pytest.mark.parametrize("backend", ["reference", "cpu", pytest.param("triton", marks=needs_triton)])
def test_bad_payload_sizes_are_value_errors_before_acc_changes(backend: str) -> None:
    acc = torch.randn(20)
    before = acc.clone()
    good_bits, good_scales = torch.zeros(3, dtype=torch.uint8), torch.ones(3)
    with force_backend(backend):
        with pytest.raises(ValueError, match="need 3 packed bytes"):
            sign_decode_accumulate(acc, torch.zeros(2, dtype=torch.uint8), good_scales, 8)
        with pytest.raises(ValueError, match="need 3 scales"):
            sign_decode_accumulate(acc, good_bits, torch.ones(4), 8)
        with pytest.raises(ValueError, match="chunk_size"):
            sign_decode_accumulate(acc, good_bits, good_scales, -1)
        with pytest.raises(ValueError, match="contiguous"):
            sign_decode_accumulate(torch.zeros(40)[::2], good_bits, good_scales, 8)
    assert torch.equal(acc, before)
