"""Probe this machine: processor, memory, accelerator, and a short compute benchmark."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from swarmnet.membership import DeviceInfo

__all__ = ["ResourceReport", "measure_gflops", "probe_resources"]


@dataclass(frozen=True)
class ResourceReport:
    """What the probe found."""

    device: DeviceInfo
    compute_gflops: float | None  # measured fp32 matmul throughput on the device; None if not measured


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _device_info() -> DeviceInfo:
    import torch  # imported here: probing is the only reason the daemon skeleton needs torch

    host_memory = int(psutil.virtual_memory().total)
    cpu_count = os.cpu_count() or 1
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return DeviceInfo(
            kind="cuda",
            name=props.name,
            memory_bytes=int(props.total_memory),
            cpu_count=cpu_count,
            host_memory_bytes=host_memory,
        )
    return DeviceInfo(
        kind="cpu", name=_cpu_name(), memory_bytes=host_memory, cpu_count=cpu_count, host_memory_bytes=host_memory
    )


def measure_gflops(device: str = "cpu", seconds: float = 0.3, size: int = 512) -> float:
    """Time fp32 matmuls of ``size``x``size`` for about ``seconds`` and return GFLOP/s."""
    import torch

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)  # warm-up: the first call pays for allocation and kernel selection
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or runs == 0:
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        runs += 1
    return 2.0 * size**3 * runs / elapsed / 1e9


def probe_resources(benchmark_seconds: float = 0.3) -> ResourceReport:
    """Describe this machine; ``benchmark_seconds=0`` skips the compute benchmark."""
    device = _device_info()
    gflops = None
    if benchmark_seconds > 0:
        gflops = round(measure_gflops("cuda" if device.kind == "cuda" else "cpu", benchmark_seconds), 1)
    return ResourceReport(device=device, compute_gflops=gflops)
