"""Batching: throughput grows with the batch, at the price of latency per request."""

from __future__ import annotations

import pytest
import torch
from models import MLP, seeded

from pytest_hwopt import hwopt

pytestmark = pytest.mark.batching

BATCHES = (1, 8, 32)


@hwopt.latency(p95_ms={"cpu": 5.0, "cuda": 1.0}, of="batch-1")
@hwopt.throughput(min={"cpu": 2000.0, "cuda": 20000.0}, of="batch-32")
def test_throughput_vs_latency(hwopt_bench, hwopt_device):
    """Batch 1 answers fastest, batch 32 serves the most items per second: both ends budgeted."""
    model = seeded(MLP()).to(hwopt_device.torch_device)
    run = torch.inference_mode()(model)
    for b in BATCHES:
        x = torch.randn(b, 512, device=hwopt_device.torch_device)
        hwopt_bench.measure(f"batch-{b}", lambda x=x: run(x), items=b)
    r = hwopt_bench.run()
    for b in BATCHES:
        m = r[f"batch-{b}"]
        hwopt_bench.note(f"b{b}_items_per_s", m.throughput)
        hwopt_bench.note(f"b{b}_p95_ms", m.p95_ms)
    gain = r["batch-32"].throughput / r["batch-1"].throughput
    hwopt_bench.note("throughput_gain_b32_vs_b1", gain)
    assert gain >= 2.0, f"batch 32 should serve >= 2x the items per second of batch 1: {gain:.2f}x"
    assert r["batch-32"].p95_ms > r["batch-1"].p95_ms, "a batch takes longer than one item"
