"""Pick a kernel implementation for the tensors at hand: Triton on CUDA, the fast CPU path on CPU.

Every kernel has three implementations with one signature: ``reference`` (plain, readable
PyTorch, what tests compare against), ``cpu`` (fast on CPU) and ``triton`` (CUDA, or the CPU
under ``TRITON_INTERPRET=1`` for tests). ``force_backend`` overrides the choice for a block of
code, which is how tests reach the reference or the Triton path::

    with force_backend("reference"):
        payload = ef_sign_encode(grad, residual, 4096)
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Generic, TypeVar

import torch

from swarmnet.errors import KernelError

__all__ = ["Backend", "Dispatch", "force_backend", "select_backend", "triton_available"]

F = TypeVar("F", bound=Callable[..., object])


class Backend(enum.Enum):
    """Which implementation of a kernel runs."""

    REFERENCE = "reference"  # plain PyTorch, for tests and as the definition of correct
    CPU = "cpu"  # vectorised, cache-blocked PyTorch/numpy for CPU tensors
    TRITON = "triton"  # fused Triton kernels: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1


_forced: ContextVar[Backend | None] = ContextVar("swarmnet_kernel_backend", default=None)


@contextlib.contextmanager
def force_backend(backend: Backend | str) -> Iterator[None]:
    """Run every kernel called inside the block with ``backend`` (raising if it cannot)."""
    token = _forced.set(Backend(backend))
    try:
        yield
    finally:
        _forced.reset(token)


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package imports (the ``gpu`` or ``triton`` extra)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def select_backend(*tensors: torch.Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> Backend:
    """The backend for these tensors; ``KernelError`` for mixed devices or unsupported dtypes or devices.

    Only the tensors whose dtype the kernel constrains should be passed (not integer payloads).
    """
    devices = {t.device.type for t in tensors}
    if len(devices) > 1:
        raise KernelError(f"tensors on several devices: {sorted(devices)}")
    bad = [t.dtype for t in tensors if t.dtype not in dtypes]
    if bad:
        raise KernelError(f"unsupported dtype {bad[0]}; this kernel takes {', '.join(map(str, dtypes))}")
    device = devices.pop() if devices else "cpu"
    forced = _forced.get()
    if forced is Backend.REFERENCE:
        return forced
    if forced is Backend.TRITON or (forced is None and device == "cuda"):
        if not triton_available():
            raise KernelError("the Triton backend needs the triton package (pip install 'swarmnet[gpu]')")
        if device != "cuda" and not (device == "cpu" and _interpreting()):
            raise KernelError(
                f"Triton kernels run on CUDA tensors (or CPU ones under TRITON_INTERPRET=1), not {device}"
            )
        return Backend.TRITON
    if device != "cpu":
        raise KernelError(f"no {forced.value if forced else 'CPU'} implementation for {device} tensors")
    return Backend.CPU


class Dispatch(Generic[F]):
    """One kernel's three implementations, all with the same signature.

    The Triton one is given as a loader and imported on first use: importing triton costs seconds,
    and it is absent where the extra is not installed.
    """

    def __init__(self, name: str, *, reference: F, cpu: F, load_triton: Callable[[], F]) -> None:
        self.name, self.reference, self.cpu = name, reference, cpu
        self._load_triton = load_triton
        self._triton: F | None = None

    def impl(self, backend: Backend) -> F:
        """The implementation for ``backend``."""
        if backend is Backend.REFERENCE:
            return self.reference
        if backend is Backend.CPU:
            return self.cpu
        if self._triton is None:
            self._triton = self._load_triton()
        return self._triton
