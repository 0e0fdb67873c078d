"""PyTorch eager (the reference) and ``torch.compile``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pytest_hwopt.backends.base import Backend, BackendError, first_line, missing_modules
from pytest_hwopt.hardware.cudagraph import copy_outputs

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


#: torch.compile modes that replay CUDA graphs (CUDA graph trees) on a GPU
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class CompileBackend(Backend):
    """``torch.compile`` with inductor; on CUDA ``mode`` may use CUDA graphs.

    With CUDA graphs (``reduce-overhead``, the default on CUDA, or ``max-autotune``) a
    replay writes its outputs where the previous replay wrote them (CUDA graph trees), so
    an output kept past the next call would be overwritten ("accessing tensor output of
    CUDAGraphs that has been overwritten by a subsequent run"). Each call therefore
    marks a new step (``torch.compiler.cudagraph_mark_step_begin``) and returns a copy
    of the outputs (one device-to-device copy inside the timed call, as eager PyTorch
    writes fresh outputs too); ``describe()`` says so (``outputs_copied``).
    """

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
        graphs = device.kind == "cuda" and mode in CUDA_GRAPH_MODES
        mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin",
                            None) if graphs else None
        counters.clear()
        try:
            compiled: Callable[..., Any] = torch.compile(model, mode=mode)
        except Exception as exc:  # any failure is this stage's failure
            raise BackendError(f"torch.compile failed: {type(exc).__name__}: {exc}") from exc

        def run(*inputs: Any) -> Any:
            with torch.inference_mode(), _precision(device, precision):
                if not graphs:
                    return compiled(*inputs)
                if mark_step is not None:
                    mark_step()  # a new step: the previous replay's outputs may be reused
                return copy_outputs(compiled(*inputs))

        try:
            run(*example_inputs)  # compile now, so its cost is counted as preparation
        except Exception as exc:
            raise BackendError(f"torch.compile failed on the first call: "
                               f"{type(exc).__name__}: {first_line(exc, empty='')}") from exc
        breaks = sum(counters["graph_break"].values())
        self._facts = {"compile_mode": mode, "graph_breaks": breaks,
                       "graph_break_reasons": sorted(map(str, counters["graph_break"]))[:10],
                       "recompiles": int(counters["stats"].get("unique_graphs", 0)),
                       "cuda_graphs": graphs, "outputs_copied": graphs}
        return run


def _inductor_problem(device: Device) -> str | None:
    """Why inductor cannot compile on ``device`` here, or None: on the CPU it needs a C++
    compiler; on CUDA, Triton, which builds its kernel launcher with a C compiler (the
    ``CC`` environment variable, else ``gcc``, else ``clang``); both need Python's headers."""
    import os
    import shutil
    import sysconfig

    if device.kind == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
        return "inductor on CPU needs a C++ compiler (cc/gcc) on PATH"
    if device.kind == "cuda":
        if missing_modules(("triton",)):
            return "inductor on CUDA needs Triton, which is not installed (pip install triton)"
        cc = os.environ.get("CC")
        if cc and not shutil.which(cc):
            return f"inductor on CUDA: Triton's C compiler CC={cc!r} is not on PATH"
        if not cc and not (shutil.which("gcc") or shutil.which("clang")):
            return ("inductor on CUDA needs a C compiler for Triton (gcc or clang on PATH, "
                    "or CC set)")
    if not sysconfig.get_paths().get("include"):
        return "inductor needs the Python headers"
    return None
