"""The built-in backends, registered through the same hook a team's conftest uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytest_hwopt.backends.base import Backend
from pytest_hwopt.backends.cache import ArtifactCache

if TYPE_CHECKING:
    from pytest_hwopt.core.settings import Settings


def all_backends(settings: Settings, cache_dir: Path | None) -> list[Backend]:
    """pytorch (the reference), torch-compile, onnxruntime, onnxruntime-trt, tensorrt, openvino."""
    from pytest_hwopt.backends.openvino_backend import OpenVINOBackend
    from pytest_hwopt.backends.ort import OnnxRuntimeBackend, OnnxRuntimeTensorRTBackend
    from pytest_hwopt.backends.tensorrt import TensorRTBackend
    from pytest_hwopt.backends.torch_backends import CompileBackend, EagerBackend

    cache = ArtifactCache(cache_dir)
    threads = settings.threads
    return [
        EagerBackend(),
        CompileBackend(mode=settings.compile_mode),
        OnnxRuntimeBackend(cache, threads, opt_level=settings.ort_opt_level),
        OnnxRuntimeTensorRTBackend(cache, threads),
        TensorRTBackend(cache),
        OpenVINOBackend(cache, threads),
    ]
