"""Native TensorRT (placeholder until the engine builder lands)."""

from __future__ import annotations

from typing import Any

from .base import Backend


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def unavailable_reason(self, device: Any) -> str | None:
        if device.kind != "cuda":
            return "TensorRT needs an NVIDIA GPU (device is cpu)"
        return "not implemented yet"
