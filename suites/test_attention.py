"""Naive attention vs scaled_dot_product_attention: time and memory across sequence lengths."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from models import naive_attention
from torch.nn import functional as F

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
    """Time >= 1.5x on the CPU at >= 2048 tokens (2.0-4.8x measured); >= 5x on CUDA;
    peak memory >= 10x less."""
    attention_variants(hwopt_bench, n, hwopt_device)
    naive, sdpa = (peak_memory_mb(hwopt_device, v)[LENGTHS.index(n)] for v in ("naive", "sdpa"))
    assert naive is not None and sdpa, f"peak memory not measured here: {naive}, {sdpa}"
    ratio = naive / sdpa
    hwopt_bench.note("peak_memory_naive_mb", naive)
    hwopt_bench.note("peak_memory_sdpa_mb", sdpa)
    hwopt_bench.note("memory_ratio", ratio)
    assert ratio >= 10, (f"SDPA should hold >= 10x less memory than naive attention at {n} "
                         f"tokens: {naive:.1f} MB vs {sdpa:.1f} MB ({ratio:.1f}x)")


LENGTHS = (1024, 2048, 4096)

# Resident-memory growth only sees pages the process newly maps: memory that glibc kept from
# an earlier free is reused unseen (an SDPA call once read 0 MB after a naive one). So on a
# CPU each variant is measured in a fresh process whose large allocations are all mmapped
# (a fixed M_MMAP_THRESHOLD), so every free returns its pages.
_CPU_PEAKS = """
import ctypes, json, sys
try:
    ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: fixed, 64 KB
except OSError:  # not glibc: the measurement may miss reused memory (then 0 MB fails below)
    pass
import torch
from torch.nn import functional as F
from models import naive_attention
from pytest_hwopt.hardware.memory import ResidentPeak
torch.set_num_threads(1)
fn = naive_attention if sys.argv[1] == "naive" else F.scaled_dot_product_attention
peaks = []
with torch.no_grad():
    for n in json.loads(sys.argv[2]):
        q, k, v = (torch.randn(1, 8, n, 64) for _ in range(3))
        peaks.append(ResidentPeak().measure(lambda: fn(q, k, v)))
print(json.dumps(peaks))
"""


@functools.cache
def _cpu_peaks(variant: str) -> tuple[float | None, ...]:
    out = subprocess.run([sys.executable, "-c", _CPU_PEAKS, variant, json.dumps(LENGTHS)],
                         capture_output=True, text=True, timeout=300, check=True,
                         cwd=Path(__file__).parent)
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def peak_memory_mb(device, variant: str) -> tuple[float | None, ...]:
    """Peak memory of one call per length in LENGTHS: a fresh process on a CPU (measured
    once per variant), torch's peak statistics on a GPU."""
    if device.kind == "cpu":
        return _cpu_peaks(variant)
    fn = naive_attention if variant == "naive" else F.scaled_dot_product_attention
    memory = device.memory()
    with torch.no_grad():
        # each call is measured before the next length is built: binding n late is safe
        return tuple(memory.measure(lambda: fn(*qkv(n, device.torch_device)))  # noqa: B023
                     for n in LENGTHS)


def test_memory_grows_quadratically_for_naive_linearly_for_sdpa(hwopt_device):
    """Doubling the sequence: naive's scores matrix quadruples, SDPA's working set doubles."""
    peaks = {v: peak_memory_mb(hwopt_device, v) for v in ("naive", "sdpa")}
    if any(p is None for p in peaks["naive"] + peaks["sdpa"]):
        pytest.skip(f"peak memory cannot be measured here: {peaks}")
    print({k: [round(p, 1) for p in v] for k, v in peaks.items()})  # shown with -s
    assert min(peaks["sdpa"]) > 0, f"an SDPA call measured no memory at all: {peaks}"
    naive_growth = peaks["naive"][-1] / peaks["naive"][-2]
    sdpa_growth = peaks["sdpa"][-1] / peaks["sdpa"][-2]
    assert naive_growth >= 3.0, f"naive attention memory grew {naive_growth:.2f}x for 2x tokens"
    assert sdpa_growth <= 2.5, f"SDPA memory grew {sdpa_growth:.2f}x for 2x tokens"


@hwopt.requires(device="cuda")
@hwopt.speedup(min={"cuda": 5.0}, vs="naive", of="flash")
def test_flash_kernel_forced_on_cuda(hwopt_bench, hwopt_device):
    """The flash kernel, forced: if it cannot run (dtype, GPU), this fails instead of falling
    back."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n = 4096
    q, k, v = qkv(n, hwopt_device.torch_device, torch.float16)

    def flash():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    flash()  # raises here when the flash kernel is not available
    hwopt_bench.measure("naive", lambda: naive_attention(q, k, v))
    hwopt_bench.measure("flash", flash)
