"""The roofline: memory-bound ops judged in GB/s, compute-bound GEMM in TFLOP/s, both
against the peaks measured on this machine (copy bandwidth, GEMM per dtype)."""

from __future__ import annotations

import pytest
import torch

from pytest_hwopt import hwopt

pytestmark = pytest.mark.bandwidth

FLOAT = 4  # bytes per fp32 element


def size(device, cpu: int, cuda: int) -> int:
    return cuda if device.kind == "cuda" else cpu


@hwopt.roofline(min_fraction={"cpu": 0.5, "cuda": 0.85})
def test_copy_bandwidth(hwopt_bench, hwopt_device):
    """A device-to-device copy reaches the measured copy peak (>= 85% on CUDA)."""
    n = size(hwopt_device, 16 * 2**20, 256 * 2**20)  # 64 MB / 1 GB of fp32
    src = torch.randn(n, device=hwopt_device.torch_device)
    dst = torch.empty_like(src)
    hwopt_bench.measure("copy", lambda: dst.copy_(src), bytes=2 * n * FLOAT)


@hwopt.roofline(min_fraction={"cpu": 0.3, "cuda": 0.6})
def test_elementwise_add_is_memory_bound(hwopt_bench, hwopt_device):
    """a + b: 1 FLOP per 12 bytes, far below the ridge point: judged on bandwidth."""
    n = size(hwopt_device, 16 * 2**20, 256 * 2**20)
    a = torch.randn(n, device=hwopt_device.torch_device)
    b = torch.randn(n, device=hwopt_device.torch_device)
    out = torch.empty_like(a)
    hwopt_bench.measure("add", lambda: torch.add(a, b, out=out), bytes=3 * n * FLOAT, flops=n)


@hwopt.roofline(min_fraction={"cpu": 0.2, "cuda": 0.5})
def test_gemv_is_memory_bound(hwopt_bench, hwopt_device):
    """Matrix-vector: every weight read once for 2 FLOPs (intensity 0.5 FLOP/byte)."""
    n = size(hwopt_device, 4096, 16384)
    w = torch.randn(n, n, device=hwopt_device.torch_device)
    x = torch.randn(n, device=hwopt_device.torch_device)
    hwopt_bench.measure("gemv", lambda: w @ x, bytes=(n * n + 2 * n) * FLOAT, flops=2 * n * n)


@hwopt.roofline(min_fraction={"cpu": 0.5, "cuda": 0.6})
def test_gemm_is_compute_bound(hwopt_bench, hwopt_device):
    """Matrix-matrix at n=1024 (CPU) / 8192 (CUDA): intensity ~n/6, judged on TFLOP/s."""
    n = size(hwopt_device, 1024, 8192)
    a = torch.randn(n, n, device=hwopt_device.torch_device)
    b = torch.randn(n, n, device=hwopt_device.torch_device)
    hwopt_bench.measure("gemm", lambda: a @ b, bytes=3 * n * n * FLOAT, flops=2 * n**3)
    m = hwopt_bench.run()["gemm"]
    hwopt_bench.note("achieved_tflops", m.extra["achieved_tflops"])
    hwopt_bench.note("intensity_flop_per_byte", m.extra["achieved_intensity"])
