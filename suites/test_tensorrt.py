"""Native TensorRT engines (fp32, fp16) vs eager PyTorch and vs ONNX Runtime's CUDA provider.

Skips on a CPU with the reason. Unverified on hardware until a GPU run proves it.
"""

from __future__ import annotations

import pytest
import torch
from models import SmallCNN, seeded

from pytest_hwopt import hwopt

pytestmark = [pytest.mark.tensorrt, hwopt.requires(device="cuda", backends="tensorrt")]


def cnn_batch32(device):
    return seeded(SmallCNN()), (torch.randn(32, 3, 64, 64),)


@hwopt.speedup(min={"cuda": 1.0}, vs="pytorch")
@hwopt.cold_start(max_s=600)
def test_tensorrt_fp32_vs_eager(hwopt_bench, hwopt_device):
    hwopt_bench.model(*cnn_batch32(hwopt_device), backend="tensorrt")
    hwopt_bench.note("engine_build_s", hwopt_bench.run()["tensorrt"].extra.get("engine_build_s"))


@hwopt.speedup(min={"cuda": 3.0}, vs="pytorch", of="tensorrt-fp16")
@hwopt.cold_start(max_s=600, of="tensorrt-fp16")
def test_tensorrt_fp16_vs_eager(hwopt_bench, hwopt_device):
    """TensorRT fp16 >= 3x over eager fp32 (the lesson's 2x TensorRT x 2x FP16)."""
    hwopt_bench.model(*cnn_batch32(hwopt_device), backend="tensorrt", precision="fp16")


@hwopt.requires(backends="onnxruntime")
def test_tensorrt_vs_onnxruntime_cuda(hwopt_bench, hwopt_device):
    """Reported: TensorRT against ORT's CUDA provider on the same graph."""
    model, x = cnn_batch32(hwopt_device)
    hwopt_bench.model(model, x, backend="tensorrt")
    hwopt_bench.model(model, x, backend="onnxruntime")
