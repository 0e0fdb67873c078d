"""The same GEMM on every available device, measured: the lesson's GPU vs CPU table."""

from __future__ import annotations

import pytest
import torch

from pytest_hwopt import hwopt, measure
from pytest_hwopt.core.engine import EngineConfig

pytestmark = pytest.mark.hardware

N = 2048


def gemm_on(device: str):
    a = torch.randn(N, N, device=device)
    b = torch.randn(N, N, device=device)
    return lambda: a @ b


@hwopt.requires(device="cpu")
def test_gemm_tflops_cpu(hwopt_bench):
    hwopt_bench.measure("cpu", gemm_on("cpu"), flops=2 * N**3, bytes=3 * N * N * 4)
    m = hwopt_bench.run()["cpu"]
    hwopt_bench.note("cpu_tflops", m.extra["achieved_tflops"])


@hwopt.requires(device="cuda")
@hwopt.speedup(min={"cuda": 10.0}, vs="cpu", of="cuda")
def test_gemm_gpu_vs_cpu(hwopt_bench, hwopt_device):
    """On a GPU run: the GPU's GEMM (CUDA events) against the CPU's, measured in the same test.

    The CPU variant is timed with the host clock by pytest_hwopt.measure and added
    as a variant of its own, so both appear with their TFLOP/s.
    """
    cpu = measure(gemm_on("cpu"), name="cpu", config=EngineConfig(max_time_s=3, min_rounds=3))
    hwopt_bench.measure("cuda", gemm_on(hwopt_device.torch_device), flops=2 * N**3,
                        bytes=3 * N * N * 4)
    gpu = hwopt_bench.run()["cuda"]
    hwopt_bench.note("cpu_tflops", 2 * N**3 / (cpu.median_ms / 1000) / 1e12)
    hwopt_bench.note("cuda_tflops", gpu.extra["achieved_tflops"])
    hwopt_bench.note("gpu_vs_cpu", cpu.median_ms / gpu.median_ms)
