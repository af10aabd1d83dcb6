"""topk_threshold: every backend selects the same entries, values and residual as the reference, bit for bit.

All three backends share ``estimate_threshold`` (host-side sampling with one seeded generator) and do the
same fp32 add and compare, so indices, values and residuals are compared with ``torch.equal``: there are no
rounding ties to allow for. Data are continuous random normals, so magnitudes do not tie at the threshold.
"""

from __future__ import annotations

import math

import pytest
import torch

from swarmnet.errors import KernelError
from swarmnet.kernels import topk as topk_module
from swarmnet.kernels.dispatch import force_backend, triton_available
from swarmnet.kernels.topk import estimate_threshold, topk_threshold

needs_triton = pytest.mark.skipif(not triton_available(), reason="the triton package is not installed")

Result = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _data(n: int, seed: int, residual: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    return x, (torch.randn(n, generator=g) * 0.5 if residual else None)


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and elements, counting NaN equal to NaN (at the same positions)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.masked_fill(a.isnan(), 0), b.masked_fill(b.isnan(), 0))


def _run(backend: str, x: torch.Tensor, k: int, residual: torch.Tensor | None, **kwargs: int) -> Result:
    """(indices, values, updated residual) of one backend; the inputs are left untouched."""
    x_before = x.clone()
    state = None if residual is None else residual.clone()
    with force_backend(backend):
        indices, values = topk_threshold(x, k, state, **kwargs)
    assert _equal(x, x_before)
    return indices, values, state


def _check_consistent(x: torch.Tensor, residual: torch.Tensor | None, result: Result, **kwargs: int) -> None:
    """The result against the definition, element by element, independent of any backend."""
    indices, values, state = result
    v = x.reshape(-1) if residual is None else x.reshape(-1) + residual.reshape(-1)
    k = kwargs.get("k", 0)
    t = estimate_threshold(x, k, kwargs.get("sample_size", 65536), kwargs.get("seed", 0), residual=residual)
    assert indices.dtype == torch.int64
    assert values.dtype == torch.float32
    assert torch.equal(indices, (v.abs() >= t).nonzero().reshape(-1))
    assert torch.equal(values, v[indices])
    assert not values.isnan().any()
    if state is not None:
        assert torch.equal(state.reshape(-1), v.index_fill(0, indices, 0.0))


def _assert_same(result: Result, expected: Result) -> None:
    for got, want in zip(result, expected, strict=True):
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert _equal(got, want)


# n, k, sample_size: empty, one element, exact (n <= sample), sampled, not a multiple of 4096, a few blocks.
CASES = [(0, 5, 64), (1, 1, 64), (7, 3, 64), (4097, 40, 1000), (3 * 4096 + 5, 123, 2000), (20_000, 20_000, 500)]


@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize(("n", "k", "sample_size"), [*CASES, (200_003, 2000, 65536), (5_000_011, 50_000, 65536)])
def test_cpu_path_matches_the_reference(n: int, k: int, sample_size: int, with_residual: bool) -> None:
    x, residual = _data(n, n, with_residual)
    expected = _run("reference", x, k, residual, sample_size=sample_size, seed=3)
    _check_consistent(x, residual, expected, k=k, sample_size=sample_size, seed=3)
    _assert_same(_run("cpu", x, k, residual, sample_size=sample_size, seed=3), expected)


@pytest.mark.parametrize("with_residual", [False, True])
def test_cpu_path_chunks_and_threads_join_in_order(monkeypatch: pytest.MonkeyPatch, with_residual: bool) -> None:
    # Small chunks and parts, so that 50k entries cross many chunk and thread boundaries at awkward places.
    monkeypatch.setattr(topk_module, "_CHUNK", 1000)
    monkeypatch.setattr(topk_module, "_PIECE", 7001)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    x, residual = _data(50_001, 11, with_residual)
    expected = _run("reference", x, 700, residual, sample_size=4000)
    _assert_same(_run("cpu", x, 700, residual, sample_size=4000), expected)


@needs_triton
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize(("n", "k", "sample_size"), CASES)
def test_triton_path_matches_the_reference(n: int, k: int, sample_size: int, with_residual: bool) -> None:
    x, residual = _data(n, n + 1, with_residual)
    expected = _run("reference", x, k, residual, sample_size=sample_size, seed=5)
    _assert_same(_run("triton", x, k, residual, sample_size=sample_size, seed=5), expected)


BACKENDS = ["reference", "cpu", pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_residual", [False, True])
def test_small_tensors_get_the_exact_top_k(backend: str, with_residual: bool) -> None:
    x, residual = _data(5000, 21, with_residual)
    indices, values, state = _run(backend, x, 77, residual, sample_size=5000)
    v = x if residual is None else x + residual
    assert torch.equal(indices, torch.topk(v.abs(), 77).indices.sort().values)
    assert torch.equal(values, v[indices])
    if state is not None:
        assert torch.equal(state, v.index_fill(0, indices, 0.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_strided_residual_is_updated_in_place(backend: str) -> None:
    x, full = _data(60 * 70, 8, True)
    assert full is not None
    x, residual = x.view(60, 70), full.view(70, 60).t()  # not contiguous
    expected = _run("reference", x, 100, residual, sample_size=1000)
    _check_consistent(x, residual, expected, k=100, sample_size=1000)
    result = _run(backend, x, 100, residual, sample_size=1000)
    assert result[2] is not None
    assert result[2].stride() == residual.stride()
    _assert_same(result, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_zero_selects_nothing_and_k_beyond_n_selects_everything(backend: str) -> None:
    x, residual = _data(300, 2, True)
    assert residual is not None
    indices, values, state = _run(backend, x, 0, residual)
    assert indices.numel() == values.numel() == 0
    assert state is not None
    assert torch.equal(state, x + residual)
    indices, values, state = _run(backend, x, 1000, residual)
    assert torch.equal(indices, torch.arange(300))
    assert torch.equal(values, x + residual)
    assert state is not None
    assert not state.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_entries_are_never_selected_and_stay_in_the_residual(backend: str) -> None:
    x, residual = _data(9000, 4, True)
    assert residual is not None
    x[::97] = math.nan
    indices, values, state = _run(backend, x, 90, residual, sample_size=2000)
    _assert_same((indices, values, state), _run("reference", x, 90, residual, sample_size=2000))
    assert indices.numel() > 0
    assert not values.isnan().any()
    assert not bool(torch.isin(indices, torch.arange(0, 9000, 97)).any())
    assert state is not None
    assert bool(state[::97].isnan().all())


def test_sampled_count_is_near_k_and_reproducible() -> None:
    x, _ = _data(1_000_000, 6, False)
    indices, _values = topk_threshold(x, 10_000)
    assert 7_000 <= indices.numel() <= 13_000  # ~2.5% relative spread with 650 sampled hits
    assert torch.equal(topk_threshold(x, 10_000)[0], indices)
    assert not torch.equal(topk_threshold(x, 10_000, seed=1)[0], indices)


def test_threshold_with_a_residual_equals_the_threshold_of_the_sum() -> None:
    x, residual = _data(100_000, 9, True)
    assert residual is not None
    for sample_size in (1000, 100_000):
        fused = estimate_threshold(x, 500, sample_size, 2, residual=residual)
        assert fused == estimate_threshold(x + residual, 500, sample_size, 2)
    assert math.isnan(estimate_threshold(x, 0))
    assert math.isnan(estimate_threshold(torch.zeros(0), 4))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float16])
def test_unsupported_dtypes_are_a_kernel_error(dtype: torch.dtype) -> None:
    with pytest.raises(KernelError, match="unsupported dtype"):
        topk_threshold(torch.zeros(8, dtype=dtype), 2)
    with pytest.raises(KernelError, match="unsupported dtype"):
        topk_threshold(torch.zeros(8), 2, torch.zeros(8, dtype=dtype))


def test_other_devices_are_a_kernel_error() -> None:
    with force_backend("cpu"), pytest.raises(KernelError, match="no cpu implementation for meta"):
        topk_threshold(torch.empty(4, device="meta"), 1)
    with pytest.raises(KernelError, match="several devices"):
        topk_threshold(torch.zeros(4), 1, torch.empty(4, device="meta"))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bad_arguments_are_value_errors(backend: str) -> None:
    with force_backend(backend):
        with pytest.raises(ValueError, match="k must be non-negative"):
            topk_threshold(torch.zeros(4), -1)
        with pytest.raises(ValueError, match="sample_size must be positive"):
            topk_threshold(torch.zeros(4), 1, sample_size=0)
        with pytest.raises(ValueError, match="residual has 3 elements"):
            topk_threshold(torch.zeros(4), 1, torch.zeros(3))


@needs_triton
def test_triton_refuses_tensors_it_cannot_reach() -> None:
    with force_backend("triton"), pytest.raises(KernelError, match="Triton kernels run on CUDA tensors"):
        topk_threshold(torch.empty(4, device="meta"), 1)
