"""swarmnet.kernels: fused tensor kernels, each with a plain-PyTorch reference of the same signature.

Kernels arrive with the kernels issue; nothing here imports Triton at import time.
"""

__all__: list[str] = []
