"""outer_nesterov: the reference is torch's Nesterov SGD on the pseudo-gradient; CPU and Triton match it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from swarmnet.errors import KernelError
from swarmnet.kernels.dispatch import force_backend, triton_available
from swarmnet.kernels.nesterov import CHUNK_ELEMENTS, outer_nesterov, outer_nesterov_reference

LR, MOMENTUM = 0.7, 0.9  # DiLoCo's outer settings

needs_triton = pytest.mark.skipif(not triton_available(), reason="the triton package is not installed")


def buffers(numel: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global parameters, averaged local ones a small step away, and a non-zero momentum buffer."""
    generator = torch.Generator().manual_seed(seed)
    global_params = torch.randn(numel, generator=generator)
    local_params = global_params - 0.01 * torch.randn(numel, generator=generator)
    momentum_buf = 0.01 * torch.randn(numel, generator=generator)
    return global_params, local_params, momentum_buf


def run(
    backend: str, state: tuple[torch.Tensor, ...], lr: float = LR, momentum: float = MOMENTUM
) -> list[torch.Tensor]:
    copies = [t.clone() for t in state]
    with force_backend(backend):
        outer_nesterov(copies[0], copies[1], copies[2], lr, momentum)
    return copies


def labelled(name: str) -> Callable[[str], str]:
    return lambda message: f"{name}: {message}"


def assert_matches_reference(backend: str, numel: int, seed: int) -> None:
    state = buffers(numel, seed)
    expected = run("reference", state)
    got = run(backend, state)
    for name, ours, ref in zip(("global", "local", "momentum"), got, expected, strict=True):
        assert torch.isfinite(ours).all(), name
        # Only fp32 rounding can differ (fused multiply-adds, vector vs scalar tails): far under 1e-5.
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6, msg=labelled(name))
    assert torch.equal(got[0], got[1])  # local is an exact copy of the new global


@pytest.mark.parametrize("numel", [0, 1, 7, 1000, CHUNK_ELEMENTS, 3 * CHUNK_ELEMENTS + 17])
def test_cpu_path_matches_reference(numel: int) -> None:
    assert_matches_reference("cpu", numel, seed=numel)


@needs_triton
@pytest.mark.parametrize("numel", [0, 1, 4095, 4096 * 3 + 5])
def test_triton_path_matches_reference(numel: int) -> None:
    assert_matches_reference("triton", numel, seed=numel + 1)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_rounds_equal_torch_nesterov_sgd_on_the_pseudo_gradient(backend: str) -> None:
    """Three outer rounds: ours on flat buffers, torch.optim.SGD(nesterov=True) with grad = global - local."""
    generator = torch.Generator().manual_seed(3)
    global_params, momentum_buf = torch.randn(5000, generator=generator), torch.zeros(5000)
    param = torch.nn.Parameter(global_params.clone())
    optimizer = torch.optim.SGD([param], lr=LR, momentum=MOMENTUM, nesterov=True, dampening=0.0)
    for _ in range(3):
        # Inner steps moved the replicas; the caller averaged them into local_params.
        local_params = global_params - 0.05 * torch.randn(5000, generator=generator)
        param.grad = param.detach() - local_params
        optimizer.step()
        with force_backend(backend):
            outer_nesterov(global_params, local_params, momentum_buf, LR, MOMENTUM)
        # Equal up to fp32 rounding (torch's vectorised add uses fused multiply-adds, its scalar tail does not).
        torch.testing.assert_close(global_params, param.detach(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(momentum_buf, optimizer.state[param]["momentum_buffer"], rtol=1e-6, atol=1e-6)
        assert torch.equal(local_params, global_params)


def test_reference_spells_out_the_formula() -> None:
    global_params, local_params, momentum_buf = (torch.tensor([v]) for v in (1.0, 0.5, 0.25))
    outer_nesterov_reference(global_params, local_params, momentum_buf, 0.5, 0.5)
    # g = 0.5; m = 0.5 * 0.25 + 0.5 = 0.625; update = 0.5 + 0.5 * 0.625 = 0.8125; p = 1 - 0.40625
    assert momentum_buf.item() == 0.625
    assert global_params.item() == local_params.item() == 0.59375


def test_any_contiguous_shape_and_parameters_work() -> None:
    state = tuple(t.view(10, 30) for t in buffers(300, seed=5))
    params = [torch.nn.Parameter(t.clone()) for t in state]  # in place under no_grad, as an optimizer does
    outer_nesterov(params[0], params[1], params[2], LR, MOMENTUM)
    expected = run("reference", state)
    for ours, ref in zip(params, expected, strict=True):
        torch.testing.assert_close(ours.detach(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float16])
def test_unsupported_dtypes_are_kernel_errors(dtype: torch.dtype) -> None:
    bad = torch.zeros(4, dtype=dtype)
    with pytest.raises(KernelError, match="unsupported dtype"):
        outer_nesterov(torch.zeros(4), bad, torch.zeros(4), LR, MOMENTUM)


def test_devices_no_backend_serves_are_kernel_errors() -> None:
    meta = [torch.empty(4, device="meta") for _ in range(3)]
    with force_backend("cpu"), pytest.raises(KernelError, match="no cpu implementation for meta"):
        outer_nesterov(meta[0], meta[1], meta[2], LR, MOMENTUM)
    with pytest.raises(KernelError, match="several devices"):
        outer_nesterov(torch.zeros(4), meta[1], torch.zeros(4), LR, MOMENTUM)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bad_buffers_are_value_errors(backend: str) -> None:
    a, b, c = torch.zeros(6), torch.zeros(6), torch.zeros(6)
    with force_backend(backend):
        with pytest.raises(ValueError, match="equal numel"):
            outer_nesterov(a, b, torch.zeros(5), LR, MOMENTUM)
        with pytest.raises(ValueError, match="contiguous"):
            outer_nesterov(a, torch.zeros(2, 3).t(), c, LR, MOMENTUM)
        with pytest.raises(ValueError, match="share memory"):
            outer_nesterov(a, a, c, LR, MOMENTUM)
