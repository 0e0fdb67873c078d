"""OpenVINO on the CPU, converted from the torch module or from the exported ONNX file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_hwopt.backends.base import (
    Backend,
    BackendError,
    failure_text,
    missing_modules,
    with_fix,
)
from pytest_hwopt.backends.cache import ArtifactCache
from pytest_hwopt.backends.onnx_export import EXPORTERS

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device

# precision -> INFERENCE_PRECISION_HINT; "default" leaves OpenVINO's own choice
# (bf16 on CPUs with AMX or AVX512-BF16), which is only comparable with an accuracy budget
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "default": None}


class OpenVINOBackend(Backend):
    """OpenVINO CPU plugin with an explicit precision hint and thread count."""

    name = "openvino"
    precisions = tuple(HINTS)
    requires_modules = ("torch", "openvino")

    def __init__(self, cache: ArtifactCache, threads: int = 1, source: str = "torch",
                 name: str | None = None) -> None:
        if source not in ("torch", "onnx"):
            raise ValueError(f"source must be 'torch' or 'onnx', got {source!r}")
        self.cache, self.threads, self.source = cache, threads, source
        super().__init__(name)

    def unavailable_reason(self, device: Device) -> str | None:
        if device.kind != "cpu":
            return f"this backend runs OpenVINO's CPU plugin; device is {device.kind}"
        needed = self.requires_modules + (("onnx",) if self.source == "onnx" else ())
        return missing_modules(needed)

    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        import openvino as ov
        import torch

        try:
            if self.source == "onnx":
                from pytest_hwopt.backends.ort import cached_onnx

                path, facts = cached_onnx(self.cache, model, example_inputs, EXPORTERS, None)
                ov_model = ov.convert_model(str(path))
            else:
                facts = {}
                ov_model = ov.convert_model(model, example_input=tuple(example_inputs))
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(with_fix(f"OpenVINO conversion failed: {failure_text(exc)}",
                                        exc)) from exc
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads,
                                  "PERFORMANCE_HINT": "LATENCY"}
        if HINTS[precision]:
            config["INFERENCE_PRECISION_HINT"] = HINTS[precision]
        core = ov.Core()
        try:
            compiled = core.compile_model(ov_model, "CPU", config)
        except Exception as exc:
            raise BackendError(with_fix(f"OpenVINO compile failed: {failure_text(exc)}",
                                        exc)) from exc
        self._facts = {**facts, "source": self.source,
                       "inference_precision": _type_name(
                           compiled.get_property("INFERENCE_PRECISION_HINT")),
                       "inference_num_threads": self.threads}
        request = compiled.create_infer_request()
        count = len(compiled.outputs)

        def run(*inputs: Any) -> Any:
            request.infer([x.detach().numpy() for x in inputs])
            return tuple(torch.from_numpy(request.get_output_tensor(i).data.copy())
                         for i in range(count))

        return run


def _type_name(element_type: Any) -> str:
    """``bf16`` for OpenVINO's ``<Type: 'bfloat16'>``."""
    to_string = getattr(element_type, "to_string", None)
    return to_string() if callable(to_string) else str(element_type)
