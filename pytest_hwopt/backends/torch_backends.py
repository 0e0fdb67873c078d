"""PyTorch eager (the reference) and ``torch.compile``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pytest_hwopt.backends.base import Backend, BackendError, first_line

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device

AUTOCAST_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


@contextlib.contextmanager
def _precision(device: Device, precision: str) -> Iterator[None]:
    import torch

    if precision == "fp32":
        yield
        return
    dtype = getattr(torch, AUTOCAST_DTYPES[precision])
    with torch.autocast(device_type=device.kind, dtype=dtype):
        yield


class EagerBackend(Backend):
    """Eager PyTorch under ``torch.inference_mode``; fp16/bf16 through autocast."""

    name = "pytorch"
    precisions = ("fp32", "fp16", "bf16")
    requires_modules = ("torch",)

    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        import torch

        module = model

        def run(*inputs: Any) -> Any:
            with torch.inference_mode(), _precision(device, precision):
                return module(*inputs)

        return run


class CompileBackend(Backend):
    """``torch.compile`` with inductor; on CUDA ``mode`` may use CUDA graphs."""

    name = "torch-compile"
    precisions = ("fp32", "fp16", "bf16")
    requires_modules = ("torch",)
    slow_to_prepare = True

    def __init__(self, mode: str | None = None, name: str | None = None) -> None:
        self.mode = mode
        super().__init__(name)

    def unavailable_reason(self, device: Device) -> str | None:
        return super().unavailable_reason(device) or _inductor_problem(device)

    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        import torch
        from torch._dynamo.utils import counters

        mode = self.mode
        if mode is None:
            mode = "reduce-overhead" if device.kind == "cuda" else "default"
        counters.clear()
        try:
            compiled: Callable[..., Any] = torch.compile(model, mode=mode)
        except Exception as exc:  # any failure is this stage's failure
            raise BackendError(f"torch.compile failed: {type(exc).__name__}: {exc}") from exc

        def run(*inputs: Any) -> Any:
            with torch.inference_mode(), _precision(device, precision):
                return compiled(*inputs)

        try:
            run(*example_inputs)  # compile now, so its cost is counted as preparation
        except Exception as exc:
            raise BackendError(f"torch.compile failed on the first call: "
                               f"{type(exc).__name__}: {first_line(exc, empty='')}") from exc
        breaks = sum(counters["graph_break"].values())
        self._facts = {"compile_mode": mode, "graph_breaks": breaks,
                       "graph_break_reasons": sorted(map(str, counters["graph_break"]))[:10],
                       "recompiles": int(counters["stats"].get("unique_graphs", 0))}
        return run


def _inductor_problem(device: Device) -> str | None:
    """Why inductor cannot compile on ``device`` here (no C++ compiler, no headers), or None."""
    import shutil
    import sysconfig

    if device.kind == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
        return "inductor on CPU needs a C++ compiler (cc/gcc) on PATH"
    if not sysconfig.get_paths().get("include"):
        return "inductor needs the Python headers"
    return None
