"""The dispatcher: CPU by default, overrides for tests, clear errors for what no kernel supports."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from swarmnet.errors import KernelError
from swarmnet.kernels.dispatch import Backend, Dispatch, force_backend, select_backend, triton_available


def test_cpu_tensors_get_the_cpu_path_by_default() -> None:
    assert select_backend(torch.zeros(3), torch.ones(2)) is Backend.CPU
    assert select_backend() is Backend.CPU


def test_forcing_the_reference_works_on_any_device() -> None:
    with force_backend("reference"):
        assert select_backend(torch.zeros(3)) is Backend.REFERENCE
        assert select_backend(torch.empty(3, device="meta")) is Backend.REFERENCE
    assert select_backend(torch.zeros(3)) is Backend.CPU  # the override ends with the block


def test_forced_backends_nest_and_restore() -> None:
    with force_backend(Backend.REFERENCE):
        with force_backend("cpu"):
            assert select_backend(torch.zeros(1)) is Backend.CPU
        assert select_backend(torch.zeros(1)) is Backend.REFERENCE


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.bool])
def test_unsupported_dtypes_are_a_kernel_error(dtype: torch.dtype) -> None:
    with pytest.raises(KernelError, match="unsupported dtype"):
        select_backend(torch.zeros(2, dtype=dtype))


def test_dtype_list_is_per_kernel() -> None:
    assert select_backend(torch.zeros(2, dtype=torch.float16), dtypes=(torch.float16,)) is Backend.CPU


def test_mixed_devices_and_non_cpu_devices_are_refused() -> None:
    with pytest.raises(KernelError, match="several devices"):
        select_backend(torch.zeros(2), torch.empty(2, device="meta"))
    with pytest.raises(KernelError, match="no CPU implementation for meta"):
        select_backend(torch.empty(2, device="meta"))


def test_forced_triton_follows_the_interpreter_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    if not triton_available():
        with force_backend("triton"), pytest.raises(KernelError, match="needs the triton package"):
            select_backend(torch.zeros(2))
        return
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with force_backend("triton"):
        assert select_backend(torch.zeros(2)) is Backend.TRITON
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with force_backend("triton"), pytest.raises(KernelError, match="CUDA tensors"):
        select_backend(torch.zeros(2))


def test_dispatch_loads_the_triton_implementation_once() -> None:
    loads: list[int] = []

    def reference() -> str:
        return "reference"

    def cpu() -> str:
        return "cpu"

    def triton_impl() -> str:
        return "triton"

    def load() -> Callable[[], str]:
        loads.append(1)
        return triton_impl

    dispatch = Dispatch("demo", reference=reference, cpu=cpu, load_triton=load)
    assert [dispatch.impl(b)() for b in (Backend.REFERENCE, Backend.CPU, Backend.TRITON, Backend.TRITON)] == [
        "reference",
        "cpu",
        "triton",
        "triton",
    ]
    assert loads == [1]


def test_unknown_backend_names_fail() -> None:
    with pytest.raises(ValueError, match="'gpu' is not a valid Backend"), force_backend("gpu"):
        pass
