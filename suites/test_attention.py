"""Naive attention vs scaled_dot_product_attention: time and memory across sequence lengths."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from models import naive_attention
from pytest_hwopt import hwopt

pytestmark = pytest.mark.attention

HEADS, HEAD_DIM = 8, 64


def qkv(n: int, device: str, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(n)
    return tuple(torch.randn(1, HEADS, n, HEAD_DIM, generator=gen).to(device, dtype)
                 for _ in range(3))


def attention_variants(hwopt_bench, n: int, device) -> None:
    q, k, v = qkv(n, device.torch_device)
    flops = 4 * HEADS * n * n * HEAD_DIM  # two matmuls of n x n x d, multiply-add = 2 FLOPs
    hwopt_bench.measure("naive", lambda: naive_attention(q, k, v), flops=flops)
    hwopt_bench.measure("sdpa", lambda: F.scaled_dot_product_attention(q, k, v), flops=flops)


@hwopt.accuracy(atol=1e-4, rtol=1e-4, vs="naive")
def test_sdpa_vs_naive_512_reported(hwopt_bench, hwopt_device):
    """Short sequences: reported, no budget (the scores matrix still fits in cache)."""
    attention_variants(hwopt_bench, 512, hwopt_device)


@pytest.mark.parametrize("n", [2048, 4096])
@hwopt.speedup(min={"cpu": 1.5, "cuda": 5.0}, vs="naive")
@hwopt.accuracy(atol=1e-4, rtol=1e-4, vs="naive")
def test_sdpa_vs_naive_long(hwopt_bench, hwopt_device, n):
    """Time >= 1.5x on the CPU at >= 2048 tokens (2.0-4.8x measured); >= 5x on CUDA."""
    attention_variants(hwopt_bench, n, hwopt_device)
    results = hwopt_bench.run()
    naive, sdpa = results["naive"].peak_memory_mb, results["sdpa"].peak_memory_mb
    assert naive is not None and sdpa is not None, "peak memory not measured on this device"
    ratio = naive / max(sdpa, 1e-3)
    hwopt_bench.note("peak_memory_naive_mb", naive)
    hwopt_bench.note("peak_memory_sdpa_mb", sdpa)
    hwopt_bench.note("memory_ratio", ratio)
    assert ratio >= 10, (f"SDPA should hold >= 10x less memory than naive attention at {n} "
                         f"tokens: {naive:.1f} MB vs {sdpa:.1f} MB ({ratio:.1f}x)")


def test_memory_grows_quadratically_for_naive_linearly_for_sdpa(hwopt_device):
    """Doubling the sequence: naive's scores matrix quadruples, SDPA's working set doubles."""
    memory = hwopt_device.memory()
    peaks: dict[str, list[float]] = {"naive": [], "sdpa": []}
    lengths = [1024, 2048, 4096]
    with torch.no_grad():
        for n in lengths:
            q, k, v = qkv(n, hwopt_device.torch_device)
            peaks["naive"].append(memory.measure(lambda: naive_attention(q, k, v)))
            peaks["sdpa"].append(memory.measure(lambda: F.scaled_dot_product_attention(q, k, v)))
    if any(p is None for p in peaks["naive"]):
        pytest.skip(f"peak memory cannot be measured here ({memory.kind})")
    print({k: [round(p, 1) for p in v] for k, v in peaks.items()})  # shown with -s
    naive_growth = peaks["naive"][-1] / peaks["naive"][-2]
    sdpa_growth = peaks["sdpa"][-1] / max(peaks["sdpa"][-2], 1e-3)
    assert naive_growth >= 3.0, f"naive attention memory grew {naive_growth:.2f}x for 2x tokens"
    assert sdpa_growth <= 2.5, f"SDPA memory grew {sdpa_growth:.2f}x for 2x tokens"


@hwopt.requires(device="cuda")
@hwopt.speedup(min={"cuda": 5.0}, vs="naive", of="flash")
def test_flash_kernel_forced_on_cuda(hwopt_bench, hwopt_device):
    """The flash kernel, forced: if it cannot run (dtype, GPU), this fails instead of falling back."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n = 4096
    q, k, v = qkv(n, hwopt_device.torch_device, torch.float16)

    def flash():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    flash()  # raises here when the flash kernel is not available
    hwopt_bench.measure("naive", lambda: naive_attention(q, k, v))
    hwopt_bench.measure("flash", flash)
