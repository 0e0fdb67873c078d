"""ONNX Runtime on a GPU, driven by fakes that believe what ONNX Runtime's Python package does.

- ``OrtValue`` has no ``to_dlpack`` outside training builds: reading an output through it
  means ``numpy()``, a copy to the host;
- ``IOBinding.bind_input``/``bind_output`` take a device pointer with an element type that
  is a NumPy type or an ONNX element type number (bfloat16 has no NumPy type);
- ``run_with_iobinding`` runs on ONNX Runtime's own stream: inputs torch is still writing
  must be waited for first;
- ``get_available_providers()`` lists the CUDA and TensorRT providers whenever the package
  has them; a session whose provider libraries fail to load silently uses the next one,
  which only ``session.get_providers()`` tells.

The device is a CUDA device whose tensors live on the CPU (no GPU here), so the fake reads
and writes the bound pointers as host memory.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_hwopt.backends import ort as ort_backend
from pytest_hwopt.backends.cache import ArtifactCache
from pytest_hwopt.backends.modelpath import Unsupported

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

ORT_NAMES = {torch.float32: "tensor(float)", torch.bfloat16: "tensor(bfloat16)",
             torch.float16: "tensor(float16)"}
ONNX_NUMBERS = {1: torch.float32, 10: torch.float16, 16: torch.bfloat16}
NUMPY_TYPES = {np.float32: torch.float32, np.float16: torch.float16}


def read_device(ptr: int, shape: tuple[int, ...], dtype: Any) -> Any:
    n = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    raw = bytearray((ctypes.c_char * n).from_address(ptr))
    return torch.frombuffer(raw, dtype=dtype).reshape(shape).clone()


def torch_type(element_type: Any) -> Any:
    if isinstance(element_type, int) and element_type in ONNX_NUMBERS:
        return ONNX_NUMBERS[element_type]
    if element_type in NUMPY_TYPES:
        return NUMPY_TYPES[element_type]
    raise TypeError(f"Unsupported element type {element_type!r}")


class FakeOrtValue:
    def __init__(self, tensor: Any, log: list[str]) -> None:
        self._tensor, self._log = tensor, log

    def shape(self) -> list[int]:
        return list(self._tensor.shape)

    def data_type(self) -> str:
        return ORT_NAMES[self._tensor.dtype]

    def numpy(self) -> Any:
        self._log.append("copy to host")
        return self._tensor.float().numpy()


class FakeBinding:
    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.inputs: dict[str, tuple[int, tuple[int, ...], Any]] = {}
        self.outputs: dict[str, tuple[int, tuple[int, ...], Any] | None] = {}
        self.results: list[FakeOrtValue] = []

    def bind_input(self, name: str, device_type: str, device_id: int, element_type: Any,
                   shape: tuple[int, ...], buffer_ptr: int) -> None:
        assert device_type == "cuda"
        self.inputs[name] = (buffer_ptr, tuple(shape), torch_type(element_type))

    def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0,
                    element_type: Any = None, shape: Any = None, buffer_ptr: Any = None) -> None:
        assert device_type == "cuda"
        if buffer_ptr is None:
            self.outputs[name] = None
            return
        if element_type is None or shape is None:
            raise ValueError("`element_type` and `shape` are to be provided if pre-allocated "
                             "memory is provided")
        self.outputs[name] = (buffer_ptr, tuple(shape), torch_type(element_type))

    def clear_binding_inputs(self) -> None:
        self.inputs.clear()

    def clear_binding_outputs(self) -> None:
        self.outputs.clear()

    def get_outputs(self) -> list[FakeOrtValue]:
        return self.results


class FakeSession:
    """``y = 2 * x`` on "the device", logging syncs, runs and host copies."""

    def __init__(self, providers: list[str] | None = None) -> None:
        self.log: list[str] = []
        self._providers = providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def io_binding(self) -> FakeBinding:
        return FakeBinding(self)

    def get_inputs(self) -> list[Any]:
        return [types.SimpleNamespace(name="x")]

    def get_outputs(self) -> list[Any]:
        return [types.SimpleNamespace(name="y")]

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def run_with_iobinding(self, binding: FakeBinding) -> None:
        self.log.append("run")
        ptr, shape, dtype = binding.inputs["x"]
        y = read_device(ptr, shape, dtype) * 2
        bound = binding.outputs["y"]
        if bound is None:  # ONNX Runtime allocates the output on the device
            binding.results = [FakeOrtValue(y, self.log)]
            return
        out_ptr, out_shape, out_dtype = bound
        assert out_shape == tuple(y.shape) and out_dtype == y.dtype
        data = y.contiguous()
        ctypes.memmove(out_ptr, data.data_ptr(), data.numel() * data.element_size())


class CudaOnHost:
    kind = "cuda"
    index = 0
    name = "Fake GPU"
    torch_device = "cpu"
    facts: dict[str, Any] = {}


def runner(session: FakeSession) -> Any:
    return ort_backend._cuda_runner(session, ["x"], CudaOnHost(),
                                    sync=lambda: session.log.append("sync"))


def test_outputs_are_written_into_torch_tensors_without_a_host_copy() -> None:
    session = FakeSession()
    run = runner(session)
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    outs = [run(x)[0] for _ in range(5)]
    assert all(torch.equal(o, x * 2) for o in outs)
    assert "copy to host" not in session.log
    assert len({o.data_ptr() for o in outs}) == 5  # each call's outputs are its own
    # one run with outputs ONNX Runtime allocates to learn their shape, then bound ones
    assert session.log.count("run") == 6


def test_bf16_inputs_bind_with_the_onnx_element_type() -> None:
    session = FakeSession()
    x = torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16)
    (y,) = runner(session)(x)
    assert y.dtype == torch.bfloat16 and torch.equal(y, x * 2)
    assert ort_backend.element_type(torch.bfloat16) == 16
    with pytest.raises(TypeError, match="cannot bind a torch.complex64"):
        ort_backend.element_type(torch.complex64)


def test_inputs_are_waited_for_before_every_run() -> None:
    session = FakeSession()
    run = runner(session)
    run(torch.ones(2, 2))
    run(torch.ones(2, 2))
    assert session.log == ["sync", "run", "sync", "run", "sync", "run"]


def test_new_input_shapes_learn_new_output_shapes() -> None:
    session = FakeSession()
    run = runner(session)
    assert tuple(run(torch.ones(2, 2))[0].shape) == (2, 2)
    assert tuple(run(torch.ones(4, 2))[0].shape) == (4, 2)
    assert tuple(run(torch.ones(2, 2))[0].shape) == (2, 2)
    assert session.log.count("run") == 5  # two shapes learnt once each, three bound runs


def test_runner_states_the_memory_onnx_runtime_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hwopt.hardware import memory

    seen: dict[str, float] = {}
    monkeypatch.setattr(memory, "_held", seen)
    session = FakeSession()
    run = ort_backend._cuda_runner(session, ["x"], CudaOnHost(), sync=lambda: None,
                                   held=lambda: 48.0)
    run(torch.ones(2))
    assert list(seen.values()) == [48.0]


# -- providers: what the session really uses -------------------------------------------


def fake_onnxruntime(used: list[str]) -> types.ModuleType:
    """``onnxruntime`` whose sessions end up on ``used`` whatever was asked for, as the
    package does when a provider's libraries fail to load."""
    module = types.ModuleType("onnxruntime")
    module.__spec__ = importlib.machinery.ModuleSpec("onnxruntime", None)  # found, not imported

    class SessionOptions:
        def add_session_config_entry(self, key: str, value: str) -> None:
            pass

    module.SessionOptions = SessionOptions  # type: ignore[attr-defined]
    module.GraphOptimizationLevel = types.SimpleNamespace(  # type: ignore[attr-defined]
        ORT_DISABLE_ALL=0, ORT_ENABLE_BASIC=1, ORT_ENABLE_EXTENDED=2, ORT_ENABLE_ALL=99)
    module.get_available_providers = lambda: [  # type: ignore[attr-defined]
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    module.InferenceSession = lambda path, options, providers: FakeSession(used)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def onnx_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ArtifactCache:
    cache = ArtifactCache(tmp_path)

    def fake_onnx(cache: ArtifactCache, *args: Any, **kwargs: Any) -> tuple[Path, dict[str, Any]]:
        path = cache.root / "model.onnx"
        path.write_bytes(b"onnx")
        return path, {"exporter": "fake"}

    monkeypatch.setattr(ort_backend, "cached_onnx", fake_onnx)
    monkeypatch.setattr(ort_backend, "arena_growth_mb", lambda run, inputs, device: (
        None, "not measured: no NVML here"))
    return cache


@pytest.mark.parametrize(("backend_class", "used", "message"), [
    (ort_backend.OnnxRuntimeTensorRTBackend, ["CUDAExecutionProvider", "CPUExecutionProvider"],
     "fell back from TensorrtExecutionProvider to CUDAExecutionProvider"),
    (ort_backend.OnnxRuntimeBackend, ["CPUExecutionProvider"],
     "fell back from CUDAExecutionProvider to CPUExecutionProvider"),
])
def test_a_provider_fallback_is_a_skip_with_the_reason(
        monkeypatch: pytest.MonkeyPatch, onnx_file: ArtifactCache, backend_class: Any,
        used: list[str], message: str) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(used))
    backend = backend_class(onnx_file)
    assert backend.unavailable_reason(CudaOnHost()) is None  # listed as available
    with pytest.raises(Unsupported, match=message) as info:
        backend.prepare(torch.nn.Identity(), (torch.ones(2),), CudaOnHost(), "fp32")
    assert "could not be loaded" in str(info.value)


def test_the_provider_asked_for_runs(monkeypatch: pytest.MonkeyPatch,
                                     onnx_file: ArtifactCache) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(
        ["CUDAExecutionProvider", "CPUExecutionProvider"]))
    backend = ort_backend.OnnxRuntimeBackend(onnx_file)
    run = backend.prepare(torch.nn.Identity(), (torch.ones(2),), CudaOnHost(), "fp32")
    assert backend.describe()["providers"][0] == "CUDAExecutionProvider"
    assert backend.describe()["device_memory_outside_torch"] == "not measured: no NVML here"
    assert callable(run)


def test_provider_fallback_reads_the_first_provider_asked() -> None:
    asked = [("TensorrtExecutionProvider", {"device_id": 0}), "CUDAExecutionProvider"]
    assert ort_backend.provider_fallback(asked, ["TensorrtExecutionProvider"]) is None
    assert ort_backend.provider_fallback(["CPUExecutionProvider"],
                                         ["CPUExecutionProvider"]) is None
    assert "fell back from TensorrtExecutionProvider to nothing" in str(
        ort_backend.provider_fallback(asked, []))
