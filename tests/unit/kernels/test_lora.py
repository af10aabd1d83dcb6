"""lora_linear: the CPU and Triton paths (forward and gradients) match the plain-PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from swarmnet.errors import KernelError
from swarmnet.kernels.dispatch import force_backend, triton_available
from swarmnet.kernels.lora import lora_linear, lora_linear_reference

SCALE = 0.37  # not a power of two, so scaling rounds

needs_triton = pytest.mark.skipif(not triton_available(), reason="the triton package is not installed")

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def inputs(lead: tuple[int, ...], d_in: int, d_out: int, rank: int, *, bias: bool = True, seed: int = 0) -> Inputs:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    # peft initialises lora_b to zeros; random values here so the low-rank term is exercised.
    return (
        randn(*lead, d_in),
        randn(d_out, d_in),
        randn(rank, d_in),
        randn(d_out, rank),
        randn(d_out) if bias else None,
    )


def assert_close_to(ours: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """Every element within ``rel`` of the largest magnitude (sums of products: error scales with it)."""
    assert ours.shape == expected.shape
    assert ours.dtype == expected.dtype
    assert torch.isfinite(ours).all()
    bound = rel * max(1.0, expected.abs().max().item()) if expected.numel() else 0.0
    torch.testing.assert_close(ours, expected, rtol=rel, atol=bound)


def check_forward(backend: str, args: Inputs, rel: float = 1e-5) -> None:
    x, weight, lora_a, lora_b, bias = args
    with force_backend(backend):
        y = lora_linear(x, weight, lora_a, lora_b, SCALE, bias)
    wide = [t.double() for t in (x, weight, lora_a, lora_b)]
    expected = lora_linear_reference(
        wide[0], wide[1], wide[2], wide[3], SCALE, None if bias is None else bias.double()
    )
    assert_close_to(y.double(), expected, rel)
    assert_close_to(y, lora_linear_reference(x, weight, lora_a, lora_b, SCALE, bias), rel)


SHAPES = [  # (leading dims of x, in, out, r, bias)
    ((16,), 32, 48, 4, True),
    ((16,), 32, 48, 4, False),
    ((37,), 70, 53, 5, True),  # no dimension a multiple of any block
    ((1,), 1, 1, 1, True),
    ((0,), 8, 8, 2, True),  # no tokens
    ((5,), 8, 0, 2, True),  # no outputs
    ((2, 3, 7), 24, 20, 3, True),  # batched x
]


@pytest.mark.parametrize(("lead", "d_in", "d_out", "rank", "bias"), [*SHAPES, ((300,), 640, 384, 16, True)])
def test_cpu_forward_matches_reference(lead: tuple[int, ...], d_in: int, d_out: int, rank: int, bias: bool) -> None:
    check_forward("cpu", inputs(lead, d_in, d_out, rank, bias=bias, seed=d_in))


@needs_triton
@pytest.mark.parametrize(("lead", "d_in", "d_out", "rank", "bias"), SHAPES)
def test_triton_forward_matches_reference(lead: tuple[int, ...], d_in: int, d_out: int, rank: int, bias: bool) -> None:
    check_forward("triton", inputs(lead, d_in, d_out, rank, bias=bias, seed=d_in + 1))


@needs_triton
def test_triton_takes_strided_inputs() -> None:
    x, weight, lora_a, lora_b, bias = inputs((20,), 40, 24, 4, seed=9)
    # Transposed copies: the same values with the kernel reading across rows.
    args = (x.T.contiguous().T, weight.T.contiguous().T, lora_a, lora_b.T.contiguous().T, bias)
    assert not args[0].is_contiguous()
    check_forward("triton", args)


@pytest.mark.parametrize("backend", ["reference", "cpu", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_within_its_rounding(backend: str, dtype: torch.dtype) -> None:
    x, weight, lora_a, lora_b, bias = inputs((19,), 40, 33, 3, seed=4)
    assert bias is not None
    low = [t.to(dtype) for t in (x, weight, lora_a, lora_b, bias)]
    with force_backend(backend):
        y = lora_linear(low[0], low[1], low[2], low[3], SCALE, low[4])
    assert y.dtype == dtype
    # Against fp64 on the rounded inputs: a few output roundings (8 bits of mantissa for bf16).
    wide = [t.double() for t in low]
    expected = lora_linear_reference(wide[0], wide[1], wide[2], wide[3], SCALE, wide[4])
    assert_close_to(y.double(), expected, 2e-2 if dtype == torch.bfloat16 else 3e-3)


def gradients(backend: str, args: Inputs, grad_y: torch.Tensor, frozen: tuple[int, ...] = ()) -> list[torch.Tensor]:
    """The gradients of ``<y, grad_y>`` for every input present, except those at the ``frozen`` positions."""
    leaves = [None if t is None else t.clone().requires_grad_(i not in frozen) for i, t in enumerate(args)]
    x, weight, lora_a, lora_b, bias = leaves
    assert x is not None
    assert weight is not None
    assert lora_a is not None
    assert lora_b is not None
    with force_backend(backend):
        y = lora_linear(x, weight, lora_a, lora_b, SCALE, bias)
    wanted = [t for t in leaves if t is not None and t.requires_grad]
    return list(torch.autograd.grad(y, wanted, grad_y))


@pytest.mark.parametrize("backend", ["cpu", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("frozen", [(), (1,), (0, 1, 4)], ids=["all", "frozen-weight", "adapter-only"])
def test_gradients_match_reference(backend: str, frozen: tuple[int, ...]) -> None:
    args = inputs((2, 5), 24, 20, 3, seed=7)
    grad_y = torch.randn(2, 5, 20, generator=torch.Generator().manual_seed(8))
    expected = gradients("reference", args, grad_y, frozen)
    ours = gradients(backend, args, grad_y, frozen)
    assert len(ours) == 5 - len(frozen)
    for got, want in zip(ours, expected, strict=True):
        assert_close_to(got, want, 1e-5)


@needs_triton
def test_triton_gradients_without_bias() -> None:
    args = inputs((6,), 16, 12, 2, bias=False, seed=11)
    grad_y = torch.randn(6, 12, generator=torch.Generator().manual_seed(12))
    expected = gradients("reference", args, grad_y)
    ours = gradients("triton", args, grad_y)
    assert len(ours) == 4
    for got, want in zip(ours, expected, strict=True):
        assert_close_to(got, want, 1e-5)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64])
def test_unsupported_dtypes_are_kernel_errors(dtype: torch.dtype) -> None:
    x, weight, lora_a, lora_b, _ = inputs((4,), 8, 8, 2)
    with pytest.raises(KernelError, match="unsupported dtype"):
        lora_linear(x.to(dtype), weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype), SCALE, None)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_mixed_dtypes_are_kernel_errors(backend: str) -> None:
    x, weight, lora_a, lora_b, bias = inputs((4,), 8, 8, 2)
    with force_backend(backend), pytest.raises(KernelError, match="share one dtype"):
        lora_linear(x, weight.half(), lora_a, lora_b, SCALE, bias)


def test_devices_no_backend_serves_are_kernel_errors() -> None:
    meta = [torch.empty(shape, device="meta") for shape in ((4, 8), (6, 8), (2, 8), (6, 2))]
    with force_backend("cpu"), pytest.raises(KernelError, match="no cpu implementation for meta"):
        lora_linear(meta[0], meta[1], meta[2], meta[3], SCALE)
    with pytest.raises(KernelError, match="several devices"):
        lora_linear(torch.zeros(4, 8), meta[1], meta[2], meta[3], SCALE)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_shapes_that_do_not_fit_are_value_errors(backend: str) -> None:
    x, weight, lora_a, lora_b, bias = inputs((4,), 8, 6, 2)
    bad = [
        (x[:, :7], weight, lora_a, lora_b, bias),  # x's last dim is not in
        (x, weight, lora_a[:, :7], lora_b, bias),  # lora_a [r, in'] with in' != in
        (x, weight, lora_a, lora_b[:, :1], bias),  # lora_b's rank differs from lora_a's
        (x, weight, lora_a, lora_b, bias[:5] if bias is not None else None),  # bias [out'] with out' != out
        (x, weight.view(-1), lora_a, lora_b, bias),  # weight not 2-D
    ]
    with force_backend(backend):
        for args in bad:
            with pytest.raises(ValueError, match="lora_linear"):
                lora_linear(args[0], args[1], args[2], args[3], SCALE, args[4])
