"""Built-in backends; each class is imported on first use, so no framework loads with the plugin."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from pytest_hwopt.backends.base import Backend, BackendError

_LAZY = {
    "EagerBackend": ".torch_backends",
    "CompileBackend": ".torch_backends",
    "OnnxRuntimeBackend": ".ort",
    "OnnxRuntimeTensorRTBackend": ".ort",
    "OpenVINOBackend": ".openvino_backend",
    "TensorRTBackend": ".tensorrt",
    "ArtifactCache": ".cache",
}

__all__ = ["Backend", "BackendError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
