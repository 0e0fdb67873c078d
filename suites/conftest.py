"""Shared pieces of the suites: extra backend variants, registered through the public hook."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_hwopt_backends(config: pytest.Config) -> list:
    """Variants of the built-in backends the suites compare against each other."""
    from pytest_hwopt.backends import ArtifactCache, OnnxRuntimeBackend, OpenVINOBackend
    from pytest_hwopt.plugin import settings_of

    cache_dir = config.cache.mkdir("hwopt") if getattr(config, "cache", None) else None
    cache = ArtifactCache(cache_dir)
    threads = settings_of(config).threads
    # The fusion suite measures ORT's optimiser from the graph as the model wrote it:
    # TorchScript export without constant folding keeps BatchNorm as a node. (The dynamo
    # exporter either folds it itself or, unoptimised, leaves Cast/Expand chains that ORT
    # cannot fuse at all.)
    raw = {"raw_export": True, "exporters": ("torchscript",)}
    return [
        OnnxRuntimeBackend(cache, threads, opt_level="disable", name="ort-raw-none", **raw),
        OnnxRuntimeBackend(cache, threads, opt_level="extended", name="ort-raw-extended", **raw),
        OnnxRuntimeBackend(cache, threads, opt_level="all", name="ort-raw-all", **raw),
        OnnxRuntimeBackend(cache, threads, exporters=("torchscript",),
                           name="onnxruntime-torchscript"),
        OpenVINOBackend(cache, threads, source="onnx", name="openvino-onnx"),
    ]


@pytest.fixture
def cpu_flags(hwopt_device) -> set[str]:
    return set(hwopt_device.facts.get("cpu_flags", []))
