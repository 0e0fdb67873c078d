"""ONNX Runtime: CPU and CUDA execution providers, TensorRT through ORT, int8 dynamic
quantisation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pytest_hwopt.backends import onnx_export
from pytest_hwopt.backends.base import Backend, BackendError, first_line
from pytest_hwopt.backends.cache import ArtifactCache, model_fingerprint
from pytest_hwopt.backends.modelpath import Unsupported
from pytest_hwopt.hardware.devices import cpu_facts
from pytest_hwopt.hardware.memory import report_held

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device

OPT_LEVELS = ("disable", "basic", "extended", "all")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def cached_onnx(cache: ArtifactCache, model: Any, example_inputs: Sequence[Any],
                exporters: Sequence[str], dynamic_axes: dict[int, dict[int, str]] | None,
                optimize: bool = True) -> tuple[Path, dict[str, Any]]:
    """An ONNX file of ``model``: from the cache when its key and checksum match."""
    key = cache.key("onnx", model_fingerprint(model, example_inputs), list(exporters),
                    dynamic_axes, optimize, _version("torch"), _version("onnx"),
                    _version("onnxscript"))
    path, manifest, hit = cache.get_or_build(
        key, ".onnx", lambda p: onnx_export.export(model, example_inputs, p, exporters,
                                                   dynamic_axes, optimize))
    return path, {**manifest["facts"], "onnx_cached": hit, "onnx_path": str(path)}


class OnnxRuntimeBackend(Backend):
    """Export to ONNX, then run an ORT session (CPU EP, or CUDA EP on a GPU).

    ``opt_level`` is the graph optimisation level: disable, basic, extended or all.
    ``raw_export`` exports without the exporter's own folding, so that ORT's
    optimiser is measured from the graph as written. Intra-op threads are set
    explicitly and do not spin between calls.
    """

    name = "onnxruntime"
    precisions: tuple[str, ...] = ("fp32", "int8")
    requires_modules = ("torch", "onnx", "onnxruntime")
    provider = ""  # chosen by device unless a subclass fixes it

    def __init__(self, cache: ArtifactCache, threads: int = 1, opt_level: str = "all",
                 name: str | None = None, exporters: Sequence[str] = onnx_export.EXPORTERS,
                 dynamic_axes: dict[int, dict[int, str]] | None = None,
                 spinning: bool = False, raw_export: bool = False) -> None:
        if opt_level not in OPT_LEVELS:
            raise ValueError(f"opt_level must be one of {', '.join(OPT_LEVELS)}, got {opt_level!r}")
        self.cache, self.threads, self.opt_level = cache, threads, opt_level
        self.exporters, self.dynamic_axes, self.spinning = tuple(exporters), dynamic_axes, spinning
        self.raw_export = raw_export
        super().__init__(name)

    def unavailable_reason(self, device: Device) -> str | None:
        return super().unavailable_reason(device) or self._provider_missing(device)

    def _provider_missing(self, device: Device) -> str | None:
        """On a GPU: why this onnxruntime build cannot run the wanted provider, or None."""
        if device.kind != "cuda":
            return None
        import onnxruntime as ort

        wanted = self.provider or "CUDAExecutionProvider"
        if wanted not in ort.get_available_providers():
            return (f"this onnxruntime build has no {wanted} (has "
                    f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu")
        return None

    def _providers(self, device: Device) -> list[Any]:
        if device.kind == "cpu":
            return ["CPUExecutionProvider"]
        return [(self.provider or "CUDAExecutionProvider", {"device_id": device.index or 0}),
                "CPUExecutionProvider"]

    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        import onnxruntime as ort

        path, facts = cached_onnx(self.cache, model, example_inputs, self.exporters,
                                  self.dynamic_axes, optimize=not self.raw_export)
        if precision == "int8":
            reduce_range, why = int8_settings(device.facts if device.kind == "cpu"
                                              else cpu_facts())
            path = self._quantized(path, reduce_range)
            facts["quantization"] = ("ORT dynamic, QInt8 weights"
                                     + (f", 7-bit range ({why})" if reduce_range else ""))
            facts["quantization_reduce_range"] = reduce_range
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.opt_level]
        options.log_severity_level = 3  # errors only: no hardware-specific-model warnings
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if self.spinning else "0")
        optimized = path.with_name(f"{path.stem}.{self.name}.{self.opt_level}.optimized.onnx")
        options.optimized_model_filepath = str(optimized)
        try:
            session = ort.InferenceSession(str(path), options,
                                           providers=self._providers(device))
        except Exception as exc:
            raise BackendError(f"ONNX Runtime session failed: {type(exc).__name__}: "
                               f"{first_line(exc, empty='')}") from exc
        providers = list(session.get_providers())
        fallback = provider_fallback(self._providers(device), providers)
        if fallback is not None:
            raise Unsupported(f"{self.name}: {fallback}")
        facts.update({"providers": providers, "opt_level": self.opt_level,
                      "intra_op_threads": self.threads, "spinning": self.spinning})
        if optimized.exists():
            facts["optimized_ops"] = onnx_export.op_counts(optimized)
        names = [i.name for i in session.get_inputs()]
        if device.kind != "cuda":
            self._facts = facts
            return _cpu_runner(session, names)
        held: list[float | None] = [None]
        run = _cuda_runner(session, names, device, held=lambda: held[0])
        held[0], how = arena_growth_mb(run, example_inputs, device)
        facts.update({"device_memory_outside_torch_mb": held[0],
                      "device_memory_outside_torch": how})
        self._facts = facts
        return run

    def _quantized(self, path: Path, reduce_range: bool) -> Path:
        """Dynamic int8 quantisation. On x86 CPUs without VNNI, ONNX Runtime's u8s8 kernels
        can saturate their 16-bit intermediate sums (ONNX Runtime's quantisation guide); its
        remedy is ``reduce_range`` (7-bit weights), chosen here from the CPU's features."""
        from onnxruntime.quantization import QuantType, quantize_dynamic

        def build(out: Path) -> dict[str, Any]:
            quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8,
                             reduce_range=reduce_range)
            return {"source": path.name, "reduce_range": reduce_range}

        key = self.cache.key("int8", path.name, _version("onnxruntime"),
                             "reduce_range" if reduce_range else "full_range")
        out, _, _ = self.cache.get_or_build(key, ".int8.onnx", build)
        return out


#: x86 flags of int8 dot-product instructions: AVX-512 VNNI, AVX-VNNI, AMX int8
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_X86 = ("x86_64", "amd64", "i386", "i686")


def cpu_has_vnni(facts: Mapping[str, object]) -> bool | None:
    """Whether the CPU described by ``facts`` (:func:`.devices.cpu_facts`: ``machine`` and
    ``cpu_flags``) has int8 dot-product instructions (:data:`INT8_DOT_FLAGS`); None when its
    flags are unknown. Non-x86 CPUs count as having them: ONNX Runtime's saturation note is
    about x86's u8s8 kernels."""
    machine = str(facts.get("machine", "")).lower()
    if machine and machine not in _X86:
        return True
    flags = facts.get("cpu_flags")
    if not isinstance(flags, list):
        return None
    return any(f in flags for f in INT8_DOT_FLAGS)


def int8_settings(facts: Mapping[str, object]) -> tuple[bool, str]:
    """``(reduce_range, why)`` for dynamic int8 quantisation on the CPU described by
    ``facts``: the 7-bit weight range where the CPU lacks int8 dot products, or where its
    flags are unknown (accuracy over speed); ``why`` says which, for the result's facts."""
    vnni = cpu_has_vnni(facts)
    if vnni is None:
        return True, "CPU flags unknown"
    return (False, "") if vnni else (True, "no VNNI")


def _cpu_runner(session: Any, names: list[str]) -> Callable[..., Any]:
    """Torch tensors in and out; the host copies are part of the timed call."""
    import torch

    def run(*inputs: Any) -> Any:
        feed = {n: x.detach().numpy() for n, x in zip(names, inputs)}
        outs = session.run(None, feed)
        return tuple(torch.from_numpy(o) for o in outs)

    return run


#: ONNX TensorProto element types of torch dtypes (ONNX Runtime's ``bind_input`` and
#: ``bind_output`` take them as ``element_type``, bfloat16 included, which NumPy lacks)
ONNX_TYPES: Final = {"float32": 1, "uint8": 2, "int8": 3, "int16": 5, "int32": 6, "int64": 7,
                     "bool": 9, "float16": 10, "float64": 11, "bfloat16": 16}
#: ONNX Runtime's ``OrtValue.data_type()`` strings -> torch dtype names
ORT_TYPES: Final = {"tensor(float)": "float32", "tensor(uint8)": "uint8",
                    "tensor(int8)": "int8", "tensor(int16)": "int16",
                    "tensor(int32)": "int32", "tensor(int64)": "int64",
                    "tensor(bool)": "bool", "tensor(float16)": "float16",
                    "tensor(double)": "float64", "tensor(bfloat16)": "bfloat16"}


def element_type(dtype: Any) -> Any:
    """What ``bind_input``/``bind_output`` take for a torch dtype: the NumPy type where
    NumPy has one, else (bfloat16) the ONNX element type number. TypeError for a dtype
    ONNX Runtime cannot bind."""
    import numpy as np

    name = str(dtype).removeprefix("torch.")
    if name not in ONNX_TYPES:
        raise TypeError(f"ONNX Runtime cannot bind a torch.{name} tensor (binds "
                        f"{', '.join(ONNX_TYPES)})")
    if name == "bfloat16":
        return ONNX_TYPES[name]
    return np.dtype(name).type


def provider_fallback(asked: Sequence[Any], used: Sequence[str]) -> str | None:
    """Why the session does not run on the provider asked for first, or None.

    ONNX Runtime lists the CUDA and TensorRT providers in ``get_available_providers()``
    whenever the package has them, loads their libraries only when a session is made,
    and on failure drops to the next provider (TensorRT to CUDA, CUDA to CPU) with only a
    log line; ``session.get_providers()`` tells what the session really uses."""
    first = asked[0] if asked else None
    wanted = first[0] if isinstance(first, tuple) else first
    if wanted is None or (used and used[0] == wanted):
        return None
    return (f"ONNX Runtime fell back from {wanted} to {used[0] if used else 'nothing'} (the "
            f"session uses {', '.join(used) or 'no provider'}): {wanted} is in this build "
            "but could not be loaded; its libraries (CUDA, cuDNN, TensorRT) are missing or "
            "do not match this onnxruntime")


def _cuda_runner(session: Any, names: list[str], device: Device,
                 sync: Callable[[], None] | None = None,
                 held: Callable[[], float | None] = lambda: None) -> Callable[..., Any]:
    """Torch CUDA tensors in and out through IO binding, with no host copy.

    Inputs are bound by their device pointers; outputs are torch tensors allocated on the
    device and bound the same way, so ONNX Runtime writes into them. The first call with
    new input shapes runs once with outputs ONNX Runtime allocates, to learn their shapes
    and types. ``sync`` waits for the work torch queued on its current stream (the
    inputs), as ONNX Runtime runs on its own stream (default: the device's current
    stream's ``synchronize``); ``run_with_iobinding`` returns with the outputs written.
    ``held()`` is the memory ONNX Runtime holds outside torch's allocator, stated to the
    memory probe on every call (:func:`.memory.report_held`).
    """
    import torch

    binding = session.io_binding()
    outputs = [o.name for o in session.get_outputs()]
    index = device.index or 0
    target = device.torch_device
    if sync is None:
        def sync() -> None:
            torch.cuda.current_stream(index).synchronize()

    layouts: dict[tuple[Any, ...], list[tuple[tuple[int, ...], Any]]] = {}
    source = f"onnxruntime session {id(session):x}"

    def bind_inputs(xs: Sequence[Any]) -> None:
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        for name, x in zip(names, xs):
            binding.bind_input(name, "cuda", index, element_type(x.dtype), tuple(x.shape),
                               x.data_ptr())

    def run(*inputs: Any) -> Any:
        # on the device and contiguous (bound by pointer), alive until the run returns
        xs = [x.to(device=target).contiguous() for x in inputs]
        key = tuple((tuple(x.shape), x.dtype) for x in xs)
        layout = layouts.get(key)
        if layout is None:  # new shapes: let ONNX Runtime allocate once, to learn them
            bind_inputs(xs)
            for name in outputs:
                binding.bind_output(name, "cuda", index)
            sync()
            session.run_with_iobinding(binding)
            layout = layouts[key] = [
                (tuple(int(d) for d in v.shape()), getattr(torch, ORT_TYPES[v.data_type()]))
                for v in binding.get_outputs()]
        bind_inputs(xs)
        outs = [torch.empty(shape, dtype=dtype, device=target) for shape, dtype in layout]
        for name, out in zip(outputs, outs):
            binding.bind_output(name, "cuda", index, element_type(out.dtype), tuple(out.shape),
                                out.data_ptr())
        sync()
        session.run_with_iobinding(binding)
        report_held(source, held())
        return tuple(outs)

    return run


def arena_growth_mb(run: Callable[..., Any], inputs: Sequence[Any], device: Device
                    ) -> tuple[float | None, str]:
    """Device memory ONNX Runtime takes outside torch's allocator in its first run (its
    arena: activations and workspace), MB, and how it was read: this process's memory
    as NVML sees it across the run, less what torch's allocator reserved meanwhile.
    ``(None, why)`` where NVML cannot see this process."""
    import torch

    from pytest_hwopt.hardware.nvml import shared_probe

    index = device.index or 0
    probe = shared_probe(index)
    if not probe.available():
        return None, f"not measured: {probe.reason}"
    torch.cuda.synchronize(index)
    before = probe.process_memory_mb()
    reserved = torch.cuda.memory_reserved(index)
    run(*inputs)
    torch.cuda.synchronize(index)
    after = probe.process_memory_mb()
    if before is None or after is None:
        return None, "not measured: NVML does not list this process (a PID namespace?)"
    grown = (after - before) - (torch.cuda.memory_reserved(index) - reserved) / 2**20
    return max(0.0, grown), "NVML per-process memory across the first run, less torch's"


class OnnxRuntimeTensorRTBackend(OnnxRuntimeBackend):
    """ONNX Runtime with the TensorRT execution provider (a GPU with TensorRT only)."""

    name = "onnxruntime-trt"
    precisions = ("fp32",)
    provider = "TensorrtExecutionProvider"

    def unavailable_reason(self, device: Device) -> str | None:
        if device.kind != "cuda":
            return "the TensorRT execution provider needs an NVIDIA GPU (device is cpu)"
        return super().unavailable_reason(device)

    def _providers(self, device: Device) -> list[Any]:
        trt_options = {"device_id": device.index or 0, "trt_engine_cache_enable": True,
                       "trt_engine_cache_path": str(self.cache.root / "ort-trt")}
        return [("TensorrtExecutionProvider", trt_options),
                ("CUDAExecutionProvider", {"device_id": device.index or 0}),
                "CPUExecutionProvider"]
