"""swarmnet.buffers: fresh numpy-backed CPU tensors for the hot paths."""

from __future__ import annotations

import pytest
import torch

from swarmnet.buffers import empty, zeros


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int64, torch.float16])
@pytest.mark.parametrize("numel", [0, 1, 7, 1 << 20])
def test_empty_has_the_shape_and_dtype_asked_for(numel: int, dtype: torch.dtype) -> None:
    t = empty(numel, dtype)
    assert t.shape == (numel,)
    assert t.dtype == dtype
    assert t.device.type == "cpu"
    assert t.stride() == (1,)
    t.fill_(3)  # writable, every element
    assert int((t == 3).sum()) == numel


@pytest.mark.parametrize("numel", [0, 1, 1000, (1 << 22) + 3])
def test_zeros_is_zero_filled_float32(numel: int) -> None:
    t = zeros(numel)
    assert t.shape == (numel,)
    assert t.dtype == torch.float32
    assert int(torch.count_nonzero(t)) == 0
    t[-1:] = 1.0  # usable in place like any tensor
    assert float(t.sum()) == (1.0 if numel else 0.0)


def test_buffers_are_independent() -> None:
    a, b = zeros(1 << 16), zeros(1 << 16)
    a.fill_(1.0)
    assert float(b.abs().sum()) == 0.0
    assert a.data_ptr() != b.data_ptr()
