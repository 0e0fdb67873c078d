"""The model path without pytest: ModelPath.prepare on stand-in backends, on the CPU."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from pytest_hwopt.backends import modelpath
from pytest_hwopt.backends.base import Backend, BackendError
from pytest_hwopt.backends.torch_backends import EagerBackend
from pytest_hwopt.core.bench import Bench
from pytest_hwopt.core.specs import Spec, Tolerance
from pytest_hwopt.hardware.devices import Device

torch = pytest.importorskip("torch")

CPU = Device("cpu", None, "test cpu")


class Scaled(Backend):
    """Runs the module and multiplies its output: 1.0 is right, anything else is wrong."""

    name = "scaled"
    precisions = ("fp32", "int8")

    def __init__(self, factor: float = 1.0, reason: str | None = None,
                 fails: Exception | None = None, slow: bool = False) -> None:
        super().__init__()
        self.factor, self.reason, self.fails = factor, reason, fails
        self.slow_to_prepare = slow

    def unavailable_reason(self, device: Device) -> str | None:
        return self.reason

    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        if self.fails is not None:
            raise self.fails
        self._facts = {"factor": self.factor, "dtype": torch.float16}
        return lambda *inputs: (model(*inputs) * self.factor,)


def path_for(candidate: Backend, *, fixture_backend: str | None = "scaled",
             override: Tolerance | None = None, announce_all: bool = False,
             calls: list[str] | None = None) -> tuple[modelpath.ModelPath, list[str]]:
    progress: list[str] = []
    backends: Mapping[str, Backend] = {"pytorch": EagerBackend(), candidate.name: candidate}

    def provide() -> Mapping[str, Backend]:
        if calls is not None:
            calls.append("backends")
        return backends

    path = modelpath.ModelPath(provide, CPU, threads=1, seed=0,
                               accuracy_override=lambda name: override,
                               on_progress=progress.append, fixture_backend=fixture_backend,
                               announce_all=announce_all)
    return path, progress


def model() -> tuple[Any, tuple[Any, ...]]:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3), (torch.randn(2, 4),)


def bench() -> Bench:
    return Bench(engine=None)  # type: ignore[arg-type]  # only registration is exercised


def test_prepare_registers_reference_and_candidate() -> None:
    path, progress = path_for(Scaled())
    b = bench()
    assert path.prepare(b, *model(), precision="fp32", name=None, backend=None) == "scaled"
    assert set(b.variants) == {"pytorch", "scaled"} and b.references == {"pytorch"}
    extra = b.variants["scaled"].extra
    assert extra["backend"] == "scaled" and extra["precision"] == "fp32"
    assert extra["factor"] == 1.0 and extra["preparation_warnings"] == []
    assert extra["dtype"] == "torch.float16"  # facts reduced to JSON types
    assert b.tolerances == {"scaled": Tolerance(1e-4, 1e-4)}
    assert b.implicit_specs == [Spec("accuracy", {}, vs="pytorch", of="scaled")]
    out = b.variants["scaled"].fn()
    assert isinstance(out, torch.Tensor)  # the backend's 1-tuple arranged like the module's
    assert tuple(out.shape) == (2, 3)
    assert progress == []  # quick backend, not verbose


def test_backend_argument_and_name_and_override() -> None:
    path, _ = path_for(Scaled(), fixture_backend=None, override=Tolerance(0.5, 0.5))
    b = bench()
    assert path.prepare(b, *model(), precision="int8", name="mine", backend="scaled") == "mine"
    assert b.tolerances == {"mine": Tolerance(0.5, 0.5)}
    assert b.variants["mine"].extra["precision"] == "int8"


def test_default_name_carries_precision() -> None:
    path, _ = path_for(Scaled())
    assert path.prepare(bench(), *model(), precision="int8", name=None,
                        backend=None) == "scaled-int8"


def test_backends_are_asked_for_on_first_prepare() -> None:
    calls: list[str] = []
    path, _ = path_for(Scaled(), calls=calls)
    assert calls == []
    path.prepare(bench(), *model(), precision="fp32", name=None, backend=None)
    assert calls == ["backends"]


@pytest.mark.parametrize("slow,announce_all,shown", [(True, False, True), (False, True, True),
                                                     (False, False, False)])
def test_progress_for_slow_backends_or_all(slow: bool, announce_all: bool, shown: bool) -> None:
    path, progress = path_for(Scaled(slow=slow), announce_all=announce_all)
    path.prepare(bench(), *model(), precision="fp32", name=None, backend=None)
    if shown:
        assert progress[0] == "preparing scaled"
        assert progress[1].startswith("scaled ready in ") and progress[1].endswith(" s")
    else:
        assert progress == []


def test_no_backend_is_a_usage_error() -> None:
    path, _ = path_for(Scaled(), fixture_backend=None)
    with pytest.raises(ValueError, match=r"pass backend=<name> or request the hwopt_backend"):
        path.prepare(bench(), *model(), precision="fp32", name=None, backend=None)


def test_unknown_backend_names_the_known() -> None:
    path, _ = path_for(Scaled())
    with pytest.raises(ValueError) as info:
        path.prepare(bench(), *model(), precision="fp32", name=None, backend="nope")
    assert str(info.value) == ("hwopt_bench.model(): unknown backend 'nope'; known: "
                               "pytorch, scaled")


def test_unknown_precision_is_a_usage_error() -> None:
    path, _ = path_for(Scaled())
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        path.prepare(bench(), *model(), precision="fp8", name=None, backend=None)


def test_unavailable_backend_gives_the_skip_reason() -> None:
    path, _ = path_for(Scaled(reason="needs a GPU"))
    b = bench()
    with pytest.raises(modelpath.Unavailable) as info:
        path.prepare(b, *model(), precision="fp32", name=None, backend=None)
    assert str(info.value) == "hwopt: backend scaled unavailable on cpu: needs a GPU"
    assert b.variants == {}


def test_unsupported_precision_gives_the_skip_reason() -> None:
    path, _ = path_for(Scaled())
    with pytest.raises(modelpath.Unavailable) as info:
        path.prepare(bench(), *model(), precision="fp16", name=None, backend=None)
    assert str(info.value) == ("hwopt: backend scaled does not support precision fp16 "
                               "(supports fp32, int8)")
    assert isinstance(info.value.__cause__, modelpath.Unsupported)


def test_backend_raising_unsupported_skips() -> None:
    path, _ = path_for(Scaled(fails=modelpath.Unsupported("dynamic shapes unsupported")))
    with pytest.raises(modelpath.Unavailable, match="^hwopt: dynamic shapes unsupported$"):
        path.prepare(bench(), *model(), precision="fp32", name=None, backend=None)


def test_wrong_outputs_close_the_gate() -> None:
    path, _ = path_for(Scaled(factor=2.0))
    b = bench()
    with pytest.raises(modelpath.WrongOutputs):
        path.prepare(b, *model(), precision="fp32", name=None, backend=None)
    assert "scaled" not in b.variants


def test_backend_failure_names_the_backend() -> None:
    path, _ = path_for(Scaled(fails=RuntimeError("boom\nsecond line")))
    with pytest.raises(BackendError) as info:
        path.prepare(bench(), *model(), precision="fp32", name=None, backend=None)
    assert str(info.value) == "scaled preparation failed: RuntimeError: boom"


def test_backend_error_passes_unchanged() -> None:
    path, _ = path_for(Scaled(fails=BackendError("ONNX export failed: x")))
    with pytest.raises(BackendError, match="^ONNX export failed: x$"):
        path.prepare(bench(), *model(), precision="fp32", name=None, backend=None)


def test_register_keeps_its_old_contract() -> None:
    b = bench()
    backends = {"pytorch": EagerBackend(), "scaled": Scaled()}
    module, inputs = model()
    assert modelpath.register(b, backends, "scaled", module, inputs[0], CPU, "fp32", None,
                              1, Tolerance(0.1, 0.1)) == "scaled"
    assert b.tolerances == {"scaled": Tolerance(0.1, 0.1)}
    with pytest.raises(modelpath.Unsupported, match="^backend scaled does not support"):
        modelpath.register(bench(), backends, "scaled", module, inputs, CPU, "bf16", None, 1)
    assert modelpath.variant_name("tensorrt", "fp16") == "tensorrt-fp16"
    assert modelpath.variant_name("tensorrt", "fp32") == "tensorrt"


def test_prepare_fits_the_bench() -> None:
    path, _ = path_for(Scaled())
    b = Bench(engine=None, prepare_model=path.prepare)  # type: ignore[arg-type]
    assert b.model(*model()) == "scaled"
    assert "scaled" in b.variants


class Warns(Scaled):
    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        import warnings

        warnings.warn("exporter chatter", DeprecationWarning, stacklevel=1)
        return super().prepare(model, example_inputs, device, precision)


def test_preparation_warnings_are_recorded_not_raised() -> None:
    path, _ = path_for(Warns())
    b = bench()
    path.prepare(b, *model(), precision="fp32", name=None, backend=None)
    assert b.variants["scaled"].extra["preparation_warnings"] == [
        "DeprecationWarning: exporter chatter"]


def test_other_inputs_get_their_own_reference() -> None:
    path, _ = path_for(Scaled())
    b = bench()
    module, (x,) = model()
    path.prepare(b, module, (x,), precision="fp32", name="a", backend=None)
    path.prepare(b, module, (x.clone(),), precision="fp32", name="b", backend=None)
    assert b.references == {"pytorch"}  # equal inputs: one reference
    path.prepare(b, module, (torch.randn(5, 4),), precision="fp32", name="c", backend=None)
    assert b.references == {"pytorch-a", "pytorch-c"}
    assert list(b.variants) == ["pytorch-a", "a", "b", "pytorch-c", "c"]
    assert [s.vs for s in b.implicit_specs] == ["pytorch-a", "pytorch-a", "pytorch-c"]
    assert [b.variants[n].extra["reference"] for n in "abc"] == [  # type: ignore[typeddict-item]
        "pytorch-a", "pytorch-a", "pytorch-c"]
    assert tuple(b.variants["pytorch-c"].fn().shape) == (5, 3)


def test_runtime_outputs_take_the_modules_structure() -> None:
    flat = [torch.ones(1), torch.zeros(2)]
    out = modelpath._shaped_like((torch.ones(1), None, {"h": [torch.zeros(2)]}), flat)
    assert out[0] is flat[0] and out[1] is None and out[2]["h"][0] is flat[1]
    assert modelpath._shaped_like((torch.ones(1), torch.ones(1)), flat[:1]) == flat[:1]


def test_a_model_returning_a_kv_cache_fails_with_the_fix() -> None:
    class DynamicCache:
        pass

    class WithCache(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return {"logits": x, "past_key_values": DynamicCache()}

    path, _ = path_for(Scaled())
    with pytest.raises(BackendError) as info:
        path.prepare(bench(), WithCache(), (torch.ones(2),), precision="fp32", name=None,
                     backend=None)
    assert str(info.value).startswith("output['past_key_values'] of the model is a "
                                      "DynamicCache, not a tensor -- fix: ")
    assert "use_cache=False" in str(info.value)
