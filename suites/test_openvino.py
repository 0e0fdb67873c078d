"""OpenVINO vs ONNX Runtime vs eager on the CPU, at fp32 and at OpenVINO's default precision."""

from __future__ import annotations

import pytest
import torch
from models import SmallCNN, TinyGPT, seeded

from pytest_hwopt import hwopt

pytestmark = [pytest.mark.openvino, hwopt.requires(device="cpu", backends="openvino")]


@hwopt.speedup(min={"cpu": 1.5}, vs="pytorch", of="openvino")
def test_openvino_fp32_cnn_batch32(hwopt_bench):
    """fp32 hint: same precision as eager (3.7x measured on the CI CPU)."""
    cnn, x = seeded(SmallCNN()), (torch.randn(32, 3, 64, 64),)
    hwopt_bench.model(cnn, x, backend="openvino")
    hwopt_bench.model(cnn, x, backend="onnxruntime")


@hwopt.accuracy(atol=2e-2, rtol=2e-2, of="openvino-default")
def test_openvino_default_precision_needs_an_accuracy_budget(hwopt_bench, cpu_flags):
    """OpenVINO's default runs bf16 where the CPU has AMX or AVX512-BF16: faster, and only
    comparable with eager fp32 under a bf16 accuracy budget."""
    cnn, x = seeded(SmallCNN()), (torch.randn(32, 3, 64, 64),)
    hwopt_bench.model(cnn, x, backend="openvino", precision="default", name="openvino-default")
    hwopt_bench.model(cnn, x, backend="openvino")
    r = hwopt_bench.run()
    hwopt_bench.note("default_inference_precision",
                     r["openvino-default"].extra["inference_precision"])
    hwopt_bench.note("fp32_inference_precision", r["openvino"].extra["inference_precision"])


def test_openvino_decoder_from_onnx_and_from_torch(hwopt_bench):
    """Both conversion paths produce the same outputs; speed reported."""
    gpt, ids = seeded(TinyGPT()), (torch.randint(0, 512, (1, 64)),)
    hwopt_bench.model(gpt, ids, backend="openvino", name="openvino-from-torch")
    hwopt_bench.model(gpt, ids, backend="openvino-onnx", name="openvino-from-onnx")
