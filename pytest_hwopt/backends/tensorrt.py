"""Native TensorRT: ONNX -> serialized engine (cached on disk) -> ``execute_async_v3``.

Written against TensorRT 10's documented Python API (``trt.Builder``,
``builder.create_network(flags)`` (explicit batch is the only mode in 10.x),
``trt.OnnxParser``, ``config.set_memory_pool_limit``, optimization profiles,
``builder.build_serialized_network``, ``trt.Runtime.deserialize_cuda_engine`` and the
name-based I/O API: ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``).
It is unverified on hardware until a GPU run proves it (``tests/gpu``): the unit tests
drive it with a fake ``tensorrt`` module that models versions, typing and streams.

Typing. TensorRT 10.12 deprecated weakly typed networks (precision chosen by the builder
flags ``BuilderFlag.FP16`` / ``INT8``) and their flags go in the next major version
(NVIDIA's migration guide); a strongly typed network
(``1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)``) takes every tensor's type
from the ONNX graph. From 10.12 on, or where the flags are gone, this backend builds
strongly typed: fp32 from the fp32 export, fp16 from an export of the model cast to fp16,
and int8 is a skip with the reason (it needs an explicitly quantized, Q/DQ, model, and
implicit calibration is not provided). Before 10.12 it builds weakly typed: fp16 sets
``BuilderFlag.FP16``; int8 sets ``BuilderFlag.INT8`` with no calibrator, so only
explicitly quantized (Q/DQ) ONNX layers run in int8 and a plain fp32 graph falls back to
higher precision layer by layer (TensorRT warns "Missing scale and zero-point ... expect
fall back to non-int8 implementation"); ``describe()`` says so and counts those warnings.
A precision the installed TensorRT cannot build is a skip with the reason.

Streams. ``execute_async_v3`` on the legacy default stream makes TensorRT synchronise
around every enqueue ("Using default stream in enqueueV3() may lead to performance
issues"), so the runner enqueues on the caller's current stream only when it is not the
default one, and otherwise on a dedicated stream that first waits for the caller's
stream, which then waits for it: a timer's events on the caller's stream bracket the
engine's work.

Memory. The engine's activations live in the execution context, outside torch's
allocator; the runner states their size (``device_memory_size_v2``, else
``device_memory_size``) to the memory probe (:func:`.memory.report_held`).

:class:`TensorRTBackend` takes the ``tensorrt`` module and a :class:`CudaHandle` as
parameters, each imported on first use when not given (tests pass stand-ins).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from pytest_hwopt.backends.base import Backend, BackendError, first_line, missing_modules
from pytest_hwopt.backends.cache import ArtifactCache, file_digest
from pytest_hwopt.backends.modelpath import Unsupported
from pytest_hwopt.backends.onnx_export import EXPORTERS
from pytest_hwopt.backends.ort import cached_onnx
from pytest_hwopt.hardware.memory import report_held

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device

MIN_MAJOR: Final = 10
#: the first version that deprecates weakly typed networks (and their precision flags)
STRONGLY_TYPED_FROM: Final = (10, 12)
INT8_NOTE: Final = ("INT8 flag set without a calibrator (implicit-quantization calibration is "
                    "not provided): only explicitly quantized (Q/DQ) ONNX layers run in int8; "
                    "layers of a plain fp32 graph fall back to higher precision")
INT8_FALLBACK_TEXT: Final = "fall back to non-int8"

# TensorRT DataType member -> torch dtype attribute
_DTYPES: Final = (("FLOAT", "float32"), ("HALF", "float16"), ("BF16", "bfloat16"),
                  ("INT8", "int8"), ("INT32", "int32"), ("INT64", "int64"), ("BOOL", "bool"),
                  ("UINT8", "uint8"))


class TensorRTModule(Protocol):
    """The part of the ``tensorrt`` module this backend uses (TensorRT 10 names).

    Builders, networks, parsers, engines and contexts it returns stay untyped here:
    their types live in the TensorRT bindings.
    """

    __version__: str
    ILogger: type[Any]
    DataType: Any
    BuilderFlag: Any
    NetworkDefinitionCreationFlag: Any
    MemoryPoolType: Any
    TensorIOMode: Any
    Builder: Callable[[Any], Any]
    OnnxParser: Callable[[Any, Any], Any]
    Runtime: Callable[[Any], Any]


class CudaHandle(Protocol):
    """What the backend needs of CUDA besides TensorRT; ``index`` is the CUDA ordinal."""

    def problem(self) -> str | None:
        """Why no CUDA device can be reached, or None."""

    def current(self, index: int) -> contextlib.AbstractContextManager[None]:
        """Make device ``index`` the current one (TensorRT builds and loads on it)."""

    def enqueue_stream(self, index: int) -> contextlib.AbstractContextManager[int]:
        """The raw handle (``cudaStream_t`` as int) of the stream to enqueue on: device
        ``index``'s current stream when it is not the legacy default stream (handle 0),
        else a dedicated stream ordered after the current one, which waits for the
        dedicated stream when the context exits."""

    def identity(self, index: int) -> tuple[str, str]:
        """``(GPU name, compute capability "major.minor")`` of device ``index``."""


class TorchCuda:
    """:class:`CudaHandle` through ``torch.cuda``; torch is imported on first use."""

    def __init__(self) -> None:
        self._streams: dict[int, Any] = {}  # device -> its dedicated stream

    def problem(self) -> str | None:
        import torch

        if not torch.cuda.is_available():
            why = ("a CPU build" if torch.version.cuda is None else "without a usable CUDA device")
            return f"TensorRT here needs torch with CUDA (torch {torch.__version__} is {why})"
        return None

    @contextlib.contextmanager
    def current(self, index: int) -> Iterator[None]:
        import torch

        with torch.cuda.device(index):
            yield

    @contextlib.contextmanager
    def enqueue_stream(self, index: int) -> Iterator[int]:
        import torch

        current = torch.cuda.current_stream(index)
        if int(current.cuda_stream) != 0:
            yield int(current.cuda_stream)
            return
        own = self._streams.get(index)
        if own is None:
            own = self._streams[index] = torch.cuda.Stream(device=index)
        own.wait_stream(current)  # inputs written on the caller's stream come first
        try:
            yield int(own.cuda_stream)
        finally:
            current.wait_stream(own)  # the caller's later work (and end event) after it

    def identity(self, index: int) -> tuple[str, str]:
        import torch

        props = torch.cuda.get_device_properties(index)
        return str(props.name), f"{props.major}.{props.minor}"


# --- imports and availability ----------------------------------------------------------------


def _import_trt() -> TensorRTModule:
    """The real ``tensorrt`` module (the one place it is imported)."""
    import tensorrt

    module: TensorRTModule = tensorrt
    return module


def trt_import(module: TensorRTModule | None = None
               ) -> tuple[TensorRTModule | None, str | None]:
    """``(tensorrt module, None)`` or ``(None, why it cannot be used)``.

    ``module`` is checked like an imported one (its version); without it ``tensorrt`` is
    imported.
    """
    if module is None:
        try:
            module = _import_trt()
        except ModuleNotFoundError as exc:
            if exc.name in (None, "tensorrt"):
                return None, "tensorrt not installed"
            return None, f"tensorrt import failed: {first_line(exc)}"
        except (ImportError, OSError) as exc:
            # the Python bindings without their libraries: "libnvinfer.so.10: cannot open ..."
            return None, f"tensorrt import failed: {first_line(exc)}"
    version = str(getattr(module, "__version__", "") or "")
    major = version.split(".", 1)[0]
    if not major.isdigit():
        return None, f"tensorrt has no usable __version__ ({version or 'none'})"
    if int(major) < MIN_MAJOR:
        return None, (f"tensorrt {version} is older than {MIN_MAJOR}.0; this backend uses the "
                      "TensorRT 10 API")
    return module, None


def _require_trt(module: TensorRTModule | None = None) -> TensorRTModule:
    trt, reason = trt_import(module)
    if trt is None:
        raise BackendError(f"TensorRT unavailable: {reason}")
    return trt


def version_tuple(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string such as ``10.12.0.36`` (missing parts 0)."""
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def strongly_typed(trt: TensorRTModule) -> bool:
    """Whether to build strongly typed networks: from TensorRT 10.12 (weak typing
    deprecated), or wherever the weak-typing precision flags are gone."""
    if version_tuple(str(trt.__version__)) >= STRONGLY_TYPED_FROM:
        return True
    return getattr(trt.BuilderFlag, "FP16", None) is None


def unsupported_precision(trt: TensorRTModule, precision: str,
                          strong: bool | None = None) -> str | None:
    """Why the installed TensorRT cannot build ``precision`` in a strongly (``strong``) or
    weakly typed network (None: as :func:`strongly_typed` chooses), or None."""
    version = str(trt.__version__)
    if strongly_typed(trt) if strong is None else strong:
        if getattr(trt, "NetworkDefinitionCreationFlag", None) is None or getattr(
                trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None) is None:
            return (f"tensorrt {version} has neither weak-typing precision flags nor "
                    "NetworkDefinitionCreationFlag.STRONGLY_TYPED")
        if precision == "int8":
            return (f"tensorrt {version} builds strongly typed networks (weak typing is "
                    "deprecated since 10.12): int8 needs a model quantized with Q/DQ nodes, "
                    "and implicit int8 calibration is not provided")
        return None
    flag = {"fp16": "FP16", "int8": "INT8"}.get(precision)
    if flag is not None and getattr(trt.BuilderFlag, flag, None) is None:
        return f"tensorrt {version} has no BuilderFlag.{flag} for {precision}"
    return None


# --- pure plumbing ---------------------------------------------------------------------------


class MessageLog:
    """Errors and warnings a TensorRT logger received (info and verbose are dropped)."""

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.warning_count = 0
        self.int8_fallbacks = 0

    def record(self, severity: Any, msg: str) -> None:
        level = str(getattr(severity, "name", severity)).rsplit(".", 1)[-1].upper()
        msg = str(msg).strip()
        if level in ("ERROR", "INTERNAL_ERROR"):
            if len(self.errors) < self.keep:
                self.errors.append(msg)
        elif level == "WARNING":
            self.warning_count += 1
            if INT8_FALLBACK_TEXT in msg:
                self.int8_fallbacks += 1
            if len(self.warnings) < self.keep:
                self.warnings.append(msg)

    def error_text(self, default: str = "no error was logged") -> str:
        return "; ".join(self.errors) if self.errors else default


def make_logger(trt: TensorRTModule) -> Any:
    """A ``trt.ILogger`` subclass instance whose ``messages`` is a :class:`MessageLog`."""

    # the base class is TensorRT's, known only at run time
    class CollectingLogger(trt.ILogger):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # the docs require calling the base explicitly
            self.messages = MessageLog()

        def log(self, severity: Any, msg: str) -> None:
            self.messages.record(severity, msg)

    return CollectingLogger()


_LOGGERS: list[tuple[TensorRTModule, Any]] = []


def shared_logger(trt: TensorRTModule) -> Any:
    """One logger per ``tensorrt`` module, its messages cleared for the next phase.

    TensorRT warns when builders and runtimes are created with different loggers, so
    every build and load in this process shares one.
    """
    logger = next((known for module, known in _LOGGERS if module is trt), None)
    if logger is None:
        logger = make_logger(trt)
        _LOGGERS.append((trt, logger))
    logger.messages = MessageLog()
    return logger


def torch_dtype(trt: TensorRTModule, trt_dtype: Any) -> Any:
    """The torch dtype of a ``trt.DataType``; BackendError for types torch cannot hold."""
    import torch

    for member, torch_name in _DTYPES:
        candidate = getattr(trt.DataType, member, None)
        if candidate is not None and trt_dtype == candidate:
            return getattr(torch, torch_name)
    raise BackendError(f"TensorRT tensor type {trt_dtype} has no torch equivalent "
                       f"(supported: {', '.join(m for m, _ in _DTYPES)})")


def engine_cache_key(cache: ArtifactCache, onnx_name: str, onnx_sha256: str, precision: str,
                     trt_version: str, gpu_name: str, compute_capability: str,
                     workspace_mb: int, input_shapes: Sequence[Sequence[int]],
                     typing: str = "weakly typed") -> str:
    """Key of a serialized engine: everything the plan file depends on."""
    return cache.key("tensorrt-engine", onnx_name, onnx_sha256, precision, trt_version,
                     gpu_name, compute_capability, workspace_mb,
                     [list(s) for s in input_shapes], typing)


def profile_shapes(network_shape: Sequence[int], example_shape: Sequence[int]
                   ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """``(min, opt, max)`` for an input with dynamic (-1) dims, None when it is static.

    Dynamic dims range from 1 to the example's size, optimised for the example.
    """
    dims = tuple(int(d) for d in network_shape)
    if all(d >= 0 for d in dims):
        return None
    example = tuple(int(d) for d in example_shape)
    if len(example) != len(dims):
        raise BackendError(f"TensorRT input has rank {len(dims)} {dims} but the example input "
                           f"has shape {example}")
    low = tuple(1 if d < 0 else d for d in dims)
    return low, example, example


def build_serialized(trt: TensorRTModule, onnx_bytes: bytes, precision: str, workspace_mb: int,
                     input_shapes: Sequence[Sequence[int]], logger: Any = None,
                     strong: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """Parse ONNX and build a serialized engine; returns it and facts about the build.

    ``strong``: a strongly typed network, whose types (and so its precision) are the ONNX
    graph's (None: :func:`strongly_typed` decides from the version); else weakly typed,
    with the builder flag of ``precision``. BackendError for a precision this TensorRT
    cannot build (:func:`unsupported_precision`)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise BackendError(f"TensorRT precision {precision!r} is not one of fp32, fp16, int8")
    strong = strongly_typed(trt) if strong is None else strong
    why = unsupported_precision(trt, precision, strong)
    if why is not None:
        raise BackendError(f"TensorRT cannot build {precision}: {why}")
    logger = logger if logger is not None else shared_logger(trt)
    builder = trt.Builder(logger)
    # TensorRT 10: explicit batch is the only mode; strong typing is a creation flag
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BackendError("TensorRT ONNX parse failed: "
                           + ("; ".join(errors) or logger.messages.error_text()))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if not strong and precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif not strong and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile: dict[str, list[list[int]]] = {}
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for i, tensor in enumerate(inputs):
        shape = tuple(tensor.shape)
        if all(int(d) >= 0 for d in shape):
            continue
        if i >= len(input_shapes):
            raise BackendError(f"TensorRT input {tensor.name} has dynamic shape {shape} but "
                               f"only {len(input_shapes)} example input(s) were given")
        shapes = profile_shapes(shape, input_shapes[i])
        assert shapes is not None
        profile[tensor.name] = [list(s) for s in shapes]
    if profile:
        opt_profile = builder.create_optimization_profile()
        for name, (low, opt, high) in profile.items():
            opt_profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT engine build failed: " + logger.messages.error_text())
    facts = {"optimization_profile": profile or None,
             "network": "strongly typed" if strong else "weakly typed",
             "build_warnings": logger.messages.warning_count,
             "build_warning_samples": logger.messages.warnings[:5]}
    if precision == "int8":
        facts["int8_fallback_warnings"] = logger.messages.int8_fallbacks
    return serialized, facts


def io_names(trt: TensorRTModule, engine: Any) -> tuple[list[str], list[str]]:
    """Engine input and output tensor names, in engine order."""
    inputs: list[str] = []
    outputs: list[str] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
    return inputs, outputs


def order_inputs(engine_inputs: Sequence[str], graph_inputs: Sequence[str] | None) -> list[str]:
    """Engine inputs in the ONNX graph's order (the order of the model's tensor arguments)."""
    if graph_inputs and sorted(graph_inputs) == sorted(engine_inputs):
        return list(graph_inputs)
    return list(engine_inputs)


def stage_input(x: Any, dtype: Any, target: Any) -> Any:
    """``x`` on ``target``, contiguous and of ``dtype``: itself when it already is."""
    return x.to(device=target, dtype=dtype).contiguous()


def make_runner(trt: TensorRTModule, engine: Any, context: Any, input_names: Sequence[str],
                output_names: Sequence[str], device: Device,
                enqueue: Callable[[], contextlib.AbstractContextManager[int]],
                keep_alive: Sequence[Any] = ()) -> Callable[..., tuple[Any, ...]]:
    """A callable taking the model's tensors and returning a tuple of output tensors.

    Inputs are made contiguous and of the engine's input dtypes; outputs are allocated by
    torch from the context's shapes. Work is enqueued on the stream ``enqueue()`` yields
    (:meth:`CudaHandle.enqueue_stream`: never the legacy default stream) without a
    synchronize: the caller's timer waits for its stream, which waits for the engine.
    Each call states the context's device memory to the memory probe
    (:func:`.memory.report_held`).
    """
    import torch

    in_dtypes = [torch_dtype(trt, engine.get_tensor_dtype(n)) for n in input_names]
    out_dtypes = [torch_dtype(trt, engine.get_tensor_dtype(n)) for n in output_names]
    target = device.torch_device
    held_mb = context_memory_mb(engine)
    source = f"tensorrt execution context {id(context):x}"

    def run(*inputs: Any) -> tuple[Any, ...]:
        _ = keep_alive  # logger, runtime and engine must outlive the context
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        if len(tensors) != len(input_names):
            raise BackendError(f"TensorRT engine takes {len(input_names)} input(s) "
                               f"({', '.join(input_names)}), got {len(tensors)} tensor(s)")
        staged = []
        for name, dtype, x in zip(input_names, in_dtypes, tensors):
            x = stage_input(x, dtype, target)
            staged.append(x)  # alive until enqueued; later reuse is ordered on the stream
            if context.set_input_shape(name, tuple(x.shape)) is False:
                raise BackendError(f"TensorRT rejected shape {tuple(x.shape)} for input "
                                   f"{name} (outside the engine's optimization profile?)")
            context.set_tensor_address(name, x.data_ptr())
        outputs = []
        for name, dtype in zip(output_names, out_dtypes):
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"TensorRT output {name} has data-dependent shape {shape}; "
                                   "this backend allocates outputs before running")
            out = torch.empty(shape, dtype=dtype, device=target)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        with enqueue() as stream:
            if context.execute_async_v3(stream) is False:
                raise BackendError("TensorRT execute_async_v3 failed to enqueue the engine")
        report_held(source, held_mb)
        return tuple(outputs)

    return run


def context_memory_mb(engine: Any) -> float | None:
    """Device memory an execution context of ``engine`` holds (its activations and
    scratch), MB: ``device_memory_size_v2`` (TensorRT 10.1+), else ``device_memory_size``;
    None where the engine has neither."""
    for name in ("device_memory_size_v2", "device_memory_size"):
        value = getattr(engine, name, None)
        if isinstance(value, int):
            return value / 2**20
    return None


# --- the device ------------------------------------------------------------------------------


def gpu_identity(device: Device, cuda: CudaHandle | None = None) -> tuple[str, str]:
    """GPU name and compute capability, from the device facts or else from ``cuda``."""
    facts = getattr(device, "facts", {}) or {}
    if facts.get("gpu") and facts.get("compute_capability"):
        return str(facts["gpu"]), str(facts["compute_capability"])
    return (cuda or TorchCuda()).identity(device.index or 0)


# --- the backend -----------------------------------------------------------------------------


class TensorRTBackend(Backend):
    """ONNX export, a TensorRT engine built once per GPU/precision/version and cached."""

    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    requires_modules = ("torch", "onnx")
    slow_to_prepare = True

    def __init__(self, cache: ArtifactCache, workspace_mb: int = 1024,
                 exporters: Sequence[str] = EXPORTERS,
                 dynamic_axes: dict[int, dict[int, str]] | None = None,
                 name: str | None = None, *, tensorrt: TensorRTModule | None = None,
                 cuda: CudaHandle | None = None) -> None:
        """``tensorrt``: the module (imported on first use when None); ``cuda``: the CUDA
        handle (:class:`TorchCuda` when None). ValueError when ``workspace_mb`` <= 0."""
        if workspace_mb <= 0:
            raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
        self.cache, self.workspace_mb = cache, int(workspace_mb)
        self.exporters, self.dynamic_axes = tuple(exporters), dynamic_axes
        self._trt = tensorrt
        self._cuda: CudaHandle = cuda if cuda is not None else TorchCuda()
        super().__init__(name)

    def unavailable_reason(self, device: Device) -> str | None:
        if device.kind != "cuda":
            return f"TensorRT needs an NVIDIA GPU (device is {device.kind})"
        reason = missing_modules(self.requires_modules)
        if reason:
            return reason
        reason = self._cuda.problem()
        if reason:
            return reason
        return trt_import(self._trt)[1]

    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        import torch

        self._facts = {}
        if precision not in self.precisions:
            raise BackendError(f"TensorRT precision {precision!r} is not one of "
                               f"{', '.join(self.precisions)}")
        trt = _require_trt(self._trt)
        strong = strongly_typed(trt)
        why = unsupported_precision(trt, precision, strong)
        if why is not None:
            raise Unsupported(f"{self.name} {precision}: {why}")
        cuda, index = self._cuda, device.index or 0
        export_model, export_inputs = model, example_inputs
        if strong and precision == "fp16":  # a strongly typed network's types are the graph's
            export_model, export_inputs = half_copy(model, example_inputs)
        onnx_path, facts = cached_onnx(self.cache, export_model, export_inputs, self.exporters,
                                       self.dynamic_axes)
        del export_model, export_inputs
        shapes = [tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)]
        gpu, capability = gpu_identity(device, cuda)
        version = str(trt.__version__)
        typing = "strongly typed" if strong else "weakly typed"
        key = engine_cache_key(self.cache, onnx_path.name, file_digest(onnx_path), precision,
                               version, gpu, capability, self.workspace_mb, shapes, typing)

        def build(out: Path) -> dict[str, Any]:
            start = time.perf_counter()
            with cuda.current(index):
                serialized, built = build_serialized(trt, onnx_path.read_bytes(), precision,
                                                     self.workspace_mb, shapes, strong=strong)
            with open(out, "wb") as fh:
                fh.write(serialized)
            return {**built, "engine_build_s": round(time.perf_counter() - start, 3)}

        path, manifest, hit = self.cache.get_or_build(key, ".engine", build)
        logger = shared_logger(trt)
        start = time.perf_counter()
        with cuda.current(index):
            runtime, engine = _deserialize(trt, logger, path)
            rebuilt = False
            if engine is None and hit:
                # the checksum matched but TensorRT rejects the plan: rebuild it once
                path.unlink(missing_ok=True)
                path, manifest, hit = self.cache.get_or_build(key, ".engine", build)
                runtime, engine = _deserialize(trt, logger, path)
                rebuilt = True
            if engine is None:
                raise BackendError("TensorRT engine deserialization failed: "
                                   + logger.messages.error_text())
            context = engine.create_execution_context()
            if context is None:
                raise BackendError("TensorRT could not create an execution context: "
                                   + logger.messages.error_text())
        load_s = time.perf_counter() - start
        engine_inputs, outputs = io_names(trt, engine)
        inputs = order_inputs(engine_inputs, facts.get("graph_inputs"))
        built = manifest.get("facts", {})
        self._facts = {
            **facts,
            "precision": precision,
            "tensorrt": version,
            "gpu": gpu,
            "compute_capability": capability,
            "workspace_mb": self.workspace_mb,
            "engine_path": str(path),
            "engine_cached": hit,
            "engine_rebuilt_after_load_failure": rebuilt,
            "engine_build_s": None if hit else built.get("engine_build_s"),
            "cached_engine_build_s": built.get("engine_build_s") if hit else None,
            "engine_load_s": round(load_s, 3),
            "network": typing,
            "context_memory_mb": context_memory_mb(engine),
            "optimization_profile": built.get("optimization_profile"),
            "build_warnings": built.get("build_warnings"),
            "build_warning_samples": built.get("build_warning_samples"),
            "engine_inputs": {n: str(engine.get_tensor_dtype(n)) for n in inputs},
            "engine_outputs": {n: str(engine.get_tensor_dtype(n)) for n in outputs},
            "hardware_verified": False,
        }
        if precision == "int8":
            self._facts["int8"] = INT8_NOTE
            self._facts["int8_fallback_warnings"] = built.get("int8_fallback_warnings")
        self._logger = logger
        return make_runner(trt, engine, context, inputs, outputs, device,
                           lambda: cuda.enqueue_stream(index),
                           keep_alive=(logger, runtime, engine))

    def runtime_messages(self) -> MessageLog | None:
        """Errors and warnings TensorRT logged since the last ``prepare`` loaded its engine
        (enqueue warnings included), or None before any."""
        logger = getattr(self, "_logger", None)
        return None if logger is None else logger.messages


def half_copy(model: Any, example_inputs: Sequence[Any]) -> tuple[Any, tuple[Any, ...]]:
    """A copy of ``model`` in fp16 and its floating-point example inputs cast to fp16: the
    export a strongly typed fp16 network is built from (the model itself is left as it is)."""
    import copy

    import torch

    half = copy.deepcopy(model).half()
    inputs = tuple(x.half() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                   for x in example_inputs)
    return half, inputs


def _deserialize(trt: TensorRTModule, logger: Any, path: Path) -> tuple[Any, Any]:
    """``(runtime, engine or None)``; the runtime is kept alive alongside the engine."""
    runtime = trt.Runtime(logger)
    return runtime, runtime.deserialize_cuda_engine(path.read_bytes())
