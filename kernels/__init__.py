"""swarmnet.kernels: fused tensor kernels, each with a plain-PyTorch reference of the same signature.

* **Backend, force_backend, select_backend, Dispatch (dispatch.py)**: Triton on CUDA, the fast CPU
  path on CPU, an override for tests, and a clear ``KernelError`` for unsupported dtypes or devices.

Nothing here imports Triton at import time, and nothing here knows about compression payloads
or networking: kernels take and return tensors.
"""

from swarmnet.kernels.dispatch import Backend, Dispatch, force_backend, select_backend, triton_available

__all__ = ["Backend", "Dispatch", "force_backend", "select_backend", "triton_available"]
