"""Unit tests for pytest_hwopt.backends.tensorrt, driven by a fake ``tensorrt`` module.

No GPU and no TensorRT are needed: the fake records what the backend asks of the
TensorRT 10 API (builder flags, profiles, parse, build, deserialize, execution). Like the
real library, its version decides what exists: 10.x has ``BuilderFlag.FP16``/``INT8``
(weak typing, deprecated from 10.12) and ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
(1, after EXPLICIT_BATCH); 11.x has no precision flags and STRONGLY_TYPED is 0. A strongly
typed network refuses precision flags. The backend takes the fake module and a fake CUDA
handle as constructor arguments.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_hwopt.backends import tensorrt as trt_backend
from pytest_hwopt.backends.base import BackendError
from pytest_hwopt.backends.cache import ArtifactCache

torch = pytest.importorskip("torch")

# --- a fake tensorrt module ------------------------------------------------------------------


class Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1


class BuilderFlag11(enum.Enum):  # TensorRT 11: weak typing and its precision flags are gone
    REFIT = 0


class NetworkFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0  # deprecated, ignored in 10.x
    STRONGLY_TYPED = 1


class NetworkFlag11(enum.IntEnum):
    STRONGLY_TYPED = 0


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class FakeTRT(types.SimpleNamespace):
    """Module-like: the names the backend uses, plus ``calls`` and knobs for failures."""

    def __init__(self, input_shape: tuple[int, ...] = (2, 4), version: str = "10.9.0.34",
                 parse_errors: tuple[str, ...] = (), build_fails: bool = False,
                 reject_first_load: bool = False) -> None:
        fake = self
        calls: list[tuple[Any, ...]] = []

        class ILogger:
            Severity = globals()["Severity"]

            def __init__(self) -> None:
                calls.append(("ILogger.__init__",))

        class Tensor:
            def __init__(self, name: str, shape: tuple[int, ...]) -> None:
                self.name, self.shape = name, shape

        class Network:
            def __init__(self, strongly_typed: bool = False) -> None:
                self.inputs: list[Tensor] = []
                self.strongly_typed = strongly_typed

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            def get_input(self, i: int) -> Tensor:
                return self.inputs[i]

        class Parser:
            def __init__(self, network: Network, logger: Any) -> None:
                self.network, self.logger = network, logger
                self.errors = list(fake.parse_errors)

            def parse(self, data: bytes) -> bool:
                calls.append(("parse", data))
                if self.errors:
                    self.logger.log(Severity.ERROR, "parser logged this")
                    return False
                self.network.inputs.append(Tensor("input_0", fake.input_shape))
                return True

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> str:
                return self.errors[i]

        class Config:
            def __init__(self) -> None:
                self.flags: list[Any] = []
                self.pools: dict[Any, int] = {}
                self.profiles: list[Any] = []

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                self.pools[pool] = size

            def set_flag(self, flag: Any) -> None:
                self.flags.append(flag)

            def add_optimization_profile(self, profile: Any) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple[Any, Any, Any]] = {}

            def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
                self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

        class Builder:
            def __init__(self, logger: Any) -> None:
                self.logger = logger
                calls.append(("Builder", logger))

            def create_network(self, flags: int) -> Network:
                calls.append(("create_network", flags))
                strong = 1 << fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED.value
                return Network(strongly_typed=bool(flags & strong))

            def create_builder_config(self) -> Config:
                fake.config = Config()
                return fake.config

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> Any:
                calls.append(("build", [t.name for t in network.inputs]))
                self.logger.log(Severity.VERBOSE, "chatter")
                self.logger.log(Severity.WARNING, "Missing scale and zero-point for tensor x, "
                                "expect fall back to non-int8 implementation")
                if fake.build_fails:
                    self.logger.log(Severity.ERROR, "out of workspace for layer conv1")
                    return None
                if network.strongly_typed and config.flags:
                    self.logger.log(Severity.ERROR, "precision flags are not allowed with a "
                                    "strongly typed network")
                    return None
                spec = {"flags": [f.name for f in config.flags],
                        "strongly_typed": network.strongly_typed,
                        "profiles": len(config.profiles), "n": fake.builds}
                fake.builds += 1
                return b"ENGINE:" + json.dumps(spec).encode()

        class Context:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple[int, ...]] = {}
                self.addresses: dict[str, int] = {}
                self.streams: list[int] = []

            def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
                self.shapes[name] = tuple(shape)
                return True

            def set_tensor_address(self, name: str, ptr: int) -> bool:
                self.addresses[name] = ptr
                return True

            def get_tensor_shape(self, name: str) -> tuple[int, ...]:
                return (self.shapes["input_0"][0], 3)

            def execute_async_v3(self, stream_handle: int) -> bool:
                self.streams.append(stream_handle)
                return True

        class Engine:
            num_io_tensors = 2
            device_memory_size_v2 = 64 * 2**20  # what an execution context holds
            modes = {"input_0": TensorIOMode.INPUT, "output_0": TensorIOMode.OUTPUT}
            dtypes = {"input_0": DataType.FLOAT, "output_0": DataType.HALF}

            def __init__(self, spec: dict[str, Any]) -> None:
                self.spec = spec

            def get_tensor_name(self, i: int) -> str:
                return ["input_0", "output_0"][i]

            def get_tensor_mode(self, name: str) -> Any:
                return self.modes[name]

            def get_tensor_dtype(self, name: str) -> Any:
                return self.dtypes[name]

            def create_execution_context(self) -> Context:
                fake.context = Context()
                return fake.context

        class Runtime:
            def __init__(self, logger: Any) -> None:
                calls.append(("Runtime", logger))

            def deserialize_cuda_engine(self, data: bytes) -> Any:
                calls.append(("deserialize", bytes(data)))
                if not bytes(data).startswith(b"ENGINE:"):
                    return None
                if fake.reject_first_load and fake.loads_rejected == 0:
                    fake.loads_rejected += 1
                    return None
                return Engine(json.loads(bytes(data)[len(b"ENGINE:"):]))

        def OnnxParser(network: Network, logger: Any) -> Parser:  # TensorRT's name
            return Parser(network, logger)

        eleven = int(version.split(".")[0]) >= 11 if version[:1].isdigit() else False
        super().__init__(
            __version__=version, ILogger=ILogger, DataType=DataType,
            BuilderFlag=BuilderFlag11 if eleven else BuilderFlag,
            NetworkDefinitionCreationFlag=NetworkFlag11 if eleven else NetworkFlag,
            MemoryPoolType=MemoryPoolType, TensorIOMode=TensorIOMode, Builder=Builder,
            OnnxParser=OnnxParser, Runtime=Runtime, calls=calls, input_shape=input_shape,
            parse_errors=parse_errors, build_fails=build_fails,
            reject_first_load=reject_first_load, loads_rejected=0, builds=0, config=None,
            context=None)

    def count(self, what: str) -> int:
        return sum(1 for c in self.calls if c[0] == what)


class FakeCuda:
    """A CUDA handle with no GPU: a dedicated stream (handle 1234) to enqueue on, a fixed
    identity, an optional problem."""

    def __init__(self, problem: str | None = None) -> None:
        self.reason = problem
        self.made_current: list[int] = []
        self.enqueued: list[str] = []

    def problem(self) -> str | None:
        return self.reason

    def current(self, index: int) -> contextlib.AbstractContextManager[None]:
        self.made_current.append(index)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def enqueue_stream(self, index: int) -> Iterator[int]:
        self.enqueued.append("enter")
        yield 1234
        self.enqueued.append("exit")

    def identity(self, index: int) -> tuple[str, str]:
        return "Fake GPU from CUDA", "9.0"


class FakeDevice:
    """Duck-typed CUDA device whose tensors live on the CPU (no GPU here)."""

    kind = "cuda"
    index = 0
    name = "Fake GPU"
    torch_device = "cpu"
    facts = {"gpu": "Fake GPU", "compute_capability": "9.0"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTRT:
    fake_export(monkeypatch)
    return FakeTRT()


def fake_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the (slow, cached) ONNX export with a file of fixed bytes."""

    def fake_onnx(cache: ArtifactCache, model: Any, example_inputs: Any, exporters: Any,
                  dynamic_axes: Any) -> tuple[Path, dict[str, Any]]:
        path = cache.root / "model.onnx"
        if not path.exists():
            path.write_bytes(b"onnx-bytes")
        return path, {"exporter": "fake", "graph_inputs": ["input_0"]}

    monkeypatch.setattr(trt_backend, "cached_onnx", fake_onnx)


def backend_on(fake: FakeTRT | None, cache: ArtifactCache | Path, cuda: FakeCuda | None = None,
               **options: Any) -> trt_backend.TensorRTBackend:
    """A TensorRT backend on ``fake`` (None: the real import) and a fake CUDA handle."""
    if isinstance(cache, Path):
        cache = ArtifactCache(cache)
    return trt_backend.TensorRTBackend(cache, tensorrt=fake, cuda=cuda or FakeCuda(), **options)


def prepare(backend: trt_backend.TensorRTBackend, precision: str = "fp32") -> Any:
    model = torch.nn.Linear(4, 3)
    return backend.prepare(model, (torch.ones(2, 4),), FakeDevice(), precision)


# --- unavailable reasons ---------------------------------------------------------------------


class CpuDevice:
    kind = "cpu"
    index = None


def test_cpu_device_is_unavailable(tmp_path: Path) -> None:
    backend = trt_backend.TensorRTBackend(ArtifactCache(tmp_path))
    assert backend.unavailable_reason(CpuDevice()) == "TensorRT needs an NVIDIA GPU (device is cpu)"


def test_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the real import is under test
    backend = backend_on(None, tmp_path)
    assert backend.unavailable_reason(FakeDevice()) == "tensorrt not installed"
    assert trt_backend.trt_import() == (None, "tensorrt not installed")


class _BrokenTensorRTFinder:
    """Finds ``tensorrt`` and fails to load it like bindings without libnvinfer do."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        import importlib.machinery

        if name != "tensorrt":
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        raise ImportError("libnvinfer.so.10: cannot open shared object file: No such file or "
                          "directory")


def test_libraries_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTensorRTFinder(), *sys.meta_path])
    backend = backend_on(None, tmp_path)
    assert backend.unavailable_reason(FakeDevice()) == (
        "tensorrt import failed: libnvinfer.so.10: cannot open shared object file: No such "
        "file or directory")
    assert "tensorrt" not in sys.modules


def test_old_tensorrt_is_unavailable(tmp_path: Path) -> None:
    reason = backend_on(FakeTRT(version="8.6.1"), tmp_path).unavailable_reason(FakeDevice())
    assert reason == "tensorrt 8.6.1 is older than 10.0; this backend uses the TensorRT 10 API"


def test_torch_without_cuda_is_unavailable(tmp_path: Path) -> None:
    backend = backend_on(FakeTRT(), tmp_path, cuda=FakeCuda(problem="no CUDA here"))
    reason = backend.unavailable_reason(FakeDevice())
    assert reason == "no CUDA here"


def test_real_cuda_problem_names_cpu_build() -> None:
    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    assert "TensorRT here needs torch with CUDA" in (trt_backend.TorchCuda().problem() or "")


def test_default_cuda_handle_is_torch(tmp_path: Path) -> None:
    backend = trt_backend.TensorRTBackend(ArtifactCache(tmp_path))
    assert isinstance(backend._cuda, trt_backend.TorchCuda)


def test_available_with_fake(fake: FakeTRT, tmp_path: Path) -> None:
    backend = backend_on(fake, tmp_path)
    assert backend.unavailable_reason(FakeDevice()) is None


# --- pure plumbing ---------------------------------------------------------------------------


def test_dtype_mapping() -> None:
    fake = FakeTRT()
    expected = {DataType.FLOAT: torch.float32, DataType.HALF: torch.float16,
                DataType.BF16: torch.bfloat16, DataType.INT8: torch.int8,
                DataType.INT32: torch.int32, DataType.INT64: torch.int64,
                DataType.BOOL: torch.bool, DataType.UINT8: torch.uint8}
    for trt_dtype, torch_dtype in expected.items():
        assert trt_backend.torch_dtype(fake, trt_dtype) is torch_dtype
    with pytest.raises(BackendError, match="FP8 has no torch equivalent"):
        trt_backend.torch_dtype(fake, DataType.FP8)


def test_message_log_keeps_errors_and_counts_warnings() -> None:
    log = trt_backend.MessageLog(keep=2)
    log.record(Severity.VERBOSE, "noise")
    log.record(Severity.INFO, "info")
    log.record(Severity.WARNING, "Missing scale ... expect fall back to non-int8 implementation")
    log.record(Severity.ERROR, " first ")
    log.record(Severity.INTERNAL_ERROR, "second")
    log.record(Severity.ERROR, "third (over the limit)")
    assert log.errors == ["first", "second"]
    assert log.error_text() == "first; second"
    assert (log.warning_count, log.int8_fallbacks) == (1, 1)
    assert trt_backend.MessageLog().error_text() == "no error was logged"


def test_logger_subclasses_ilogger_and_collects() -> None:
    fake = FakeTRT()
    logger = trt_backend.make_logger(fake)
    assert isinstance(logger, fake.ILogger)
    assert fake.count("ILogger.__init__") == 1
    logger.log(Severity.ERROR, "boom")
    assert logger.messages.errors == ["boom"]


def test_cache_key_covers_every_dependency(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    base = dict(onnx_name="a.onnx", onnx_sha256="00", precision="fp16", trt_version="10.9",
                gpu_name="H100", compute_capability="9.0", workspace_mb=1024,
                input_shapes=[(1, 4)])
    key = trt_backend.engine_cache_key(cache, **base)
    assert key == trt_backend.engine_cache_key(cache, **base)
    changes = dict(onnx_name="b.onnx", onnx_sha256="01", precision="fp32", trt_version="10.10",
                   gpu_name="A100", compute_capability="8.0", workspace_mb=512,
                   input_shapes=[(2, 4)])
    for field, value in changes.items():
        assert trt_backend.engine_cache_key(cache, **{**base, field: value}) != key, field


def test_profile_shapes() -> None:
    assert trt_backend.profile_shapes((2, 4), (2, 4)) is None
    assert trt_backend.profile_shapes((-1, 4), (8, 4)) == ((1, 4), (8, 4), (8, 4))
    with pytest.raises(BackendError, match="rank 2"):
        trt_backend.profile_shapes((-1, 4), (8,))


def test_order_inputs_follows_graph_when_names_match() -> None:
    assert trt_backend.order_inputs(["b", "a"], ["a", "b"]) == ["a", "b"]
    assert trt_backend.order_inputs(["b", "a"], ["x"]) == ["b", "a"]
    assert trt_backend.order_inputs(["b", "a"], None) == ["b", "a"]


# --- the build flow --------------------------------------------------------------------------


def test_build_fp32_sets_no_precision_flag_and_workspace() -> None:
    fake = FakeTRT()
    serialized, facts = trt_backend.build_serialized(fake, b"onnx", "fp32", 256, [(2, 4)])
    assert serialized.startswith(b"ENGINE:")
    assert fake.config.flags == []
    assert fake.config.pools == {MemoryPoolType.WORKSPACE: 256 << 20}
    assert ("create_network", 0) in fake.calls
    assert ("parse", b"onnx") in fake.calls
    assert facts["optimization_profile"] is None and fake.config.profiles == []


def test_build_fp16_sets_fp16_flag() -> None:
    fake = FakeTRT()
    trt_backend.build_serialized(fake, b"onnx", "fp16", 1024, [(2, 4)])
    assert fake.config.flags == [BuilderFlag.FP16]


def test_build_int8_sets_int8_flag_and_counts_fallbacks() -> None:
    fake = FakeTRT()
    _, facts = trt_backend.build_serialized(fake, b"onnx", "int8", 1024, [(2, 4)])
    assert fake.config.flags == [BuilderFlag.INT8]
    assert facts["int8_fallback_warnings"] == 1


def test_dynamic_input_gets_optimization_profile() -> None:
    fake = FakeTRT(input_shape=(-1, 4))
    _, facts = trt_backend.build_serialized(fake, b"onnx", "fp32", 1024, [(8, 4)])
    (profile,) = fake.config.profiles
    assert profile.shapes == {"input_0": ((1, 4), (8, 4), (8, 4))}
    assert facts["optimization_profile"] == {"input_0": [[1, 4], [8, 4], [8, 4]]}


def test_parse_errors_are_reported() -> None:
    fake = FakeTRT(parse_errors=("node Foo: unsupported op", "second problem"))
    with pytest.raises(BackendError) as info:
        trt_backend.build_serialized(fake, b"onnx", "fp32", 1024, [(2, 4)])
    assert str(info.value) == ("TensorRT ONNX parse failed: node Foo: unsupported op; "
                               "second problem")
    assert fake.count("build") == 0


def test_build_failure_reports_logged_errors() -> None:
    fake = FakeTRT(build_fails=True)
    with pytest.raises(BackendError) as info:
        trt_backend.build_serialized(fake, b"onnx", "fp32", 1024, [(2, 4)])
    assert str(info.value) == "TensorRT engine build failed: out of workspace for layer conv1"


# --- prepare: caching, rebuilds, the runner --------------------------------------------------


def test_engine_cached_on_second_prepare(fake: FakeTRT, tmp_path: Path) -> None:
    backend = backend_on(fake, tmp_path, workspace_mb=64)
    prepare(backend, "fp16")
    first = backend.describe()
    assert first["engine_cached"] is False and first["engine_build_s"] is not None
    assert first["precision"] == "fp16" and first["tensorrt"] == "10.9.0.34"
    assert first["gpu"] == "Fake GPU" and first["compute_capability"] == "9.0"
    assert first["exporter"] == "fake" and first["hardware_verified"] is False

    again = backend_on(fake, tmp_path, workspace_mb=64)
    prepare(again, "fp16")
    second = again.describe()
    assert fake.count("build") == 1
    assert second["engine_cached"] is True and second["engine_build_s"] is None
    assert second["cached_engine_build_s"] == first["engine_build_s"]
    assert second["engine_path"] == first["engine_path"]


def test_other_precision_or_workspace_builds_again(fake: FakeTRT, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    prepare(backend_on(fake, cache), "fp32")
    prepare(backend_on(fake, cache), "fp16")
    prepare(backend_on(fake, cache, workspace_mb=2048), "fp16")
    assert fake.count("build") == 3


def test_corrupt_cached_file_is_rebuilt(fake: FakeTRT, tmp_path: Path) -> None:
    backend = backend_on(fake, tmp_path)
    prepare(backend)
    engine = Path(backend.describe()["engine_path"])
    engine.write_bytes(b"garbage")  # checksum no longer matches the manifest
    prepare(backend)
    assert fake.count("build") == 2
    assert backend.describe()["engine_cached"] is False
    assert engine.read_bytes().startswith(b"ENGINE:")


def test_engine_rejected_by_runtime_is_rebuilt_once(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    fake_export(monkeypatch)
    fake = FakeTRT()
    backend = backend_on(fake, tmp_path)
    prepare(backend)
    fake.reject_first_load = True  # checksum matches, but TensorRT will not load it
    prepare(backend)
    facts = backend.describe()
    assert fake.count("build") == 2
    assert facts["engine_rebuilt_after_load_failure"] is True
    assert facts["engine_cached"] is False


def test_fresh_engine_that_will_not_load_fails(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    fake_export(monkeypatch)
    fake = FakeTRT(reject_first_load=True)
    with pytest.raises(BackendError, match="TensorRT engine deserialization failed"):
        prepare(backend_on(fake, tmp_path))
    assert fake.count("build") == 1


def test_prepare_parse_failure_surfaces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_export(monkeypatch)
    with pytest.raises(BackendError, match="^TensorRT ONNX parse failed: bad node$"):
        prepare(backend_on(FakeTRT(parse_errors=("bad node",)), tmp_path))


def test_prepare_without_tensorrt_fails_clearly(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the real import is under test
    with pytest.raises(BackendError, match="TensorRT unavailable: tensorrt not installed"):
        prepare(backend_on(None, tmp_path))


def test_int8_is_described(fake: FakeTRT, tmp_path: Path) -> None:
    backend = backend_on(fake, tmp_path)
    prepare(backend, "int8")
    facts = backend.describe()
    assert "Q/DQ" in facts["int8"] and "fall back to higher precision" in facts["int8"]
    assert facts["int8_fallback_warnings"] == 1
    assert fake.config.flags == [BuilderFlag.INT8]


def test_runner_binds_inputs_and_allocates_outputs(fake: FakeTRT, tmp_path: Path) -> None:
    cuda = FakeCuda()
    backend = backend_on(fake, tmp_path, cuda=cuda)
    run = prepare(backend)
    x = torch.arange(16, dtype=torch.float64).reshape(4, 4).t()  # non-contiguous, wrong dtype
    outputs = run(x)
    context = fake.context
    assert isinstance(outputs, tuple) and len(outputs) == 1
    (out,) = outputs
    assert out.dtype == torch.float16 and tuple(out.shape) == (4, 3)
    assert context.shapes == {"input_0": (4, 4)}
    assert context.addresses["output_0"] == out.data_ptr()
    assert context.streams == [1234] and cuda.enqueued == ["enter", "exit"]
    assert cuda.made_current == [0, 0]  # built and loaded on the device
    assert backend.describe()["engine_outputs"] == {"output_0": "DataType.HALF"}


def test_stage_input_makes_contiguous_engine_dtype() -> None:
    x = torch.ones(3, 4, dtype=torch.float64).t()
    staged = trt_backend.stage_input(x, torch.float32, "cpu")
    assert staged.dtype == torch.float32 and staged.is_contiguous()
    assert tuple(staged.shape) == (4, 3)
    ready = torch.ones(2, 4)
    assert trt_backend.stage_input(ready, torch.float32, "cpu") is ready  # no copy


def test_runner_passes_ready_input_without_copy() -> None:
    fake = FakeTRT()
    engine = fake.Runtime(None).deserialize_cuda_engine(b"ENGINE:{}")
    context = engine.create_execution_context()
    run = trt_backend.make_runner(fake, engine, context, ["input_0"], ["output_0"],
                                  FakeDevice(), lambda: contextlib.nullcontext(7))
    x = torch.ones(5, 4)
    (out,) = run(x)
    assert context.addresses["input_0"] == x.data_ptr()
    assert context.shapes["input_0"] == (5, 4) and tuple(out.shape) == (5, 3)
    assert context.streams == [7]


def test_runner_rejects_wrong_input_count(fake: FakeTRT, tmp_path: Path) -> None:
    run = prepare(backend_on(fake, tmp_path))
    with pytest.raises(BackendError, match="takes 1 input"):
        run(torch.ones(2, 4), torch.ones(2, 4))


def test_runner_reports_rejected_shape() -> None:
    fake = FakeTRT()
    engine = fake.Runtime(None).deserialize_cuda_engine(b"ENGINE:{}")
    context = engine.create_execution_context()
    context.set_input_shape = lambda name, shape: False
    run = trt_backend.make_runner(fake, engine, context, ["input_0"], ["output_0"],
                                  FakeDevice(), lambda: contextlib.nullcontext(7))
    with pytest.raises(BackendError, match="rejected shape"):
        run(torch.ones(2, 4))


def test_runner_reports_failed_enqueue() -> None:
    fake = FakeTRT()
    engine = fake.Runtime(None).deserialize_cuda_engine(b"ENGINE:{}")
    context = engine.create_execution_context()
    context.execute_async_v3 = lambda handle: False
    run = trt_backend.make_runner(fake, engine, context, ["input_0"], ["output_0"],
                                  FakeDevice(), lambda: contextlib.nullcontext(7))
    with pytest.raises(BackendError, match="execute_async_v3 failed"):
        run(torch.ones(2, 4))


def test_backend_attributes(tmp_path: Path) -> None:
    backend = trt_backend.TensorRTBackend(ArtifactCache(tmp_path), workspace_mb=512)
    assert backend.name == "tensorrt"
    assert backend.precisions == ("fp32", "fp16", "int8")
    assert backend.workspace_mb == 512
    with pytest.raises(ValueError, match="workspace_mb"):
        trt_backend.TensorRTBackend(ArtifactCache(tmp_path), workspace_mb=0)
    assert "unverified on hardware" in (trt_backend.__doc__ or "")


def test_real_onnx_export_feeds_the_builder(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    fake = FakeTRT()
    backend = backend_on(fake, tmp_path, exporters=("torchscript",))
    run = prepare(backend)
    facts = backend.describe()
    assert facts["exporter"] == "torchscript" and facts["graph_inputs"] == ["input_0"]
    (parsed,) = [c[1] for c in fake.calls if c[0] == "parse"]
    assert parsed == Path(facts["onnx_path"]).read_bytes()
    assert tuple(run(torch.ones(2, 4))[0].shape) == (2, 3)


def test_gpu_identity_from_facts_else_from_cuda() -> None:
    assert trt_backend.gpu_identity(FakeDevice(), FakeCuda()) == ("Fake GPU", "9.0")
    bare = FakeDevice()
    bare.facts = {}
    assert trt_backend.gpu_identity(bare, FakeCuda()) == ("Fake GPU from CUDA", "9.0")


def test_injected_module_is_version_checked_like_an_import() -> None:
    fake = FakeTRT(version="")
    assert trt_backend.trt_import(fake) == (None, "tensorrt has no usable __version__ (none)")
    ready = FakeTRT()
    assert trt_backend.trt_import(ready) == (ready, None)


# --- typing by version: weak typing deprecated in 10.12, its flags gone in 11 ----------------


@pytest.mark.parametrize(("version", "strong"), [("10.9.0.34", False), ("10.11.0", False),
                                                 ("10.12.0.36", True), ("11.0.0.10", True)])
def test_typing_follows_the_version(version: str, strong: bool) -> None:
    assert trt_backend.strongly_typed(FakeTRT(version=version)) is strong


@pytest.mark.parametrize("version", ["10.12.0.36", "11.0.0.10"])
def test_strongly_typed_fp16_is_built_from_an_fp16_export(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, version: str) -> None:
    """No precision flag (11.x has none): the network is strongly typed and its fp16
    types come from an export of the model cast to fp16; the model itself is untouched."""
    exported: list[Any] = []

    def fake_onnx(cache: ArtifactCache, model: Any, example_inputs: Any, exporters: Any,
                  dynamic_axes: Any) -> tuple[Path, dict[str, Any]]:
        exported.append((next(model.parameters()).dtype, example_inputs[0].dtype))
        path = cache.root / f"model-{len(exported)}.onnx"
        path.write_bytes(b"onnx-bytes")
        return path, {"exporter": "fake", "graph_inputs": ["input_0"]}

    monkeypatch.setattr(trt_backend, "cached_onnx", fake_onnx)
    fake = FakeTRT(version=version)
    backend = backend_on(fake, tmp_path)
    model = torch.nn.Linear(4, 3)
    backend.prepare(model, (torch.ones(2, 4),), FakeDevice(), "fp16")
    strong = 1 << fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED.value
    assert ("create_network", strong) in fake.calls
    assert fake.config.flags == []
    assert exported == [(torch.float16, torch.float16)]
    assert next(model.parameters()).dtype == torch.float32
    assert backend.describe()["network"] == "strongly typed"


def test_strongly_typed_int8_is_a_skip_with_the_reason(fake: FakeTRT, tmp_path: Path) -> None:
    from pytest_hwopt.backends.modelpath import Unsupported

    with pytest.raises(Unsupported, match=r"tensorrt 10\.12\.0 builds strongly typed "
                                          r"networks .*int8 needs a model quantized with Q/DQ"):
        prepare(backend_on(FakeTRT(version="10.12.0"), tmp_path), "int8")


def test_weakly_typed_build_refuses_a_missing_flag() -> None:
    fake = FakeTRT(version="10.9.0")
    fake.BuilderFlag = BuilderFlag11  # a build without the INT8 flag
    assert trt_backend.unsupported_precision(fake, "int8", strong=False) == (
        "tensorrt 10.9.0 has no BuilderFlag.INT8 for int8")
    with pytest.raises(BackendError, match="cannot build int8"):
        trt_backend.build_serialized(fake, b"onnx", "int8", 64, [(2, 4)], strong=False)


def test_engine_cache_key_separates_typing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    args = ("a.onnx", "00", "fp16", "10.12", "H100", "9.0", 1024, [(1, 4)])
    assert trt_backend.engine_cache_key(cache, *args, "strongly typed") != \
        trt_backend.engine_cache_key(cache, *args, "weakly typed")


# --- streams: never the legacy default stream --------------------------------------------


def test_enqueue_on_a_dedicated_stream_when_the_current_one_is_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's current stream is the legacy default stream (handle 0) unless a stream was
    set; TensorRT would synchronise around every enqueue on it."""
    from fake_cuda import FakeCuda as FakeTorchCuda

    cuda = FakeTorchCuda(count=2)
    for name in ("current_stream", "Stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    handle = trt_backend.TorchCuda()
    with handle.enqueue_stream(1) as stream:
        assert stream not in (0, None)
        own = stream
    waits = [entry for entry in cuda.log if entry[0] == "wait"]
    assert waits == [("wait", own, 0), ("wait", 0, own)]  # ordered both ways
    with handle.enqueue_stream(1) as again:
        assert again == own  # one dedicated stream per device
    side = cuda.Stream(device=1)
    cuda.log.clear()
    with cuda.stream(side), handle.enqueue_stream(1) as current:
        assert current == side.cuda_stream  # a non-default current stream is used as it is
    assert [entry for entry in cuda.log if entry[0] == "wait"] == []


def test_runner_states_the_context_memory(fake: FakeTRT, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hwopt.hardware import memory

    seen: dict[str, float] = {}
    monkeypatch.setattr(memory, "_held", seen)
    backend = backend_on(fake, tmp_path)
    run = prepare(backend)
    run(torch.ones(2, 4))
    assert list(seen.values()) == [64.0]
    assert backend.describe()["context_memory_mb"] == 64.0


def test_enqueue_warnings_are_readable_after_running(fake: FakeTRT, tmp_path: Path) -> None:
    backend = backend_on(fake, tmp_path)
    assert backend.runtime_messages() is None
    run = prepare(backend)
    run(torch.ones(2, 4))
    messages = backend.runtime_messages()
    assert messages is not None and messages.errors == []
