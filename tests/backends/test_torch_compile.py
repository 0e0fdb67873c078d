"""``torch.compile`` on a GPU, driven by a stand-in for CUDA graph trees.

What the real ``mode="reduce-overhead"`` does and the stand-in keeps: every replay writes
its outputs into the same memory, so an output kept from an earlier call changes under its
holder (torch raises "accessing tensor output of CUDAGraphs that has been overwritten by a
subsequent run" where it can tell); ``torch.compiler.cudagraph_mark_step_begin()`` starts
a new step. The device is a CUDA device whose tensors live on the CPU (no GPU here).
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from pytest_hwopt.backends import torch_backends
from pytest_hwopt.backends.torch_backends import CompileBackend

torch = pytest.importorskip("torch")


class CudaOnHost:
    kind = "cuda"
    index = 0
    name = "Fake GPU"
    torch_device = "cpu"
    facts: dict[str, Any] = {}


class GraphTree:
    """A compiled module replayed as a CUDA graph: one static output buffer."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.static: Any = None
        self.calls = 0

    def __call__(self, *inputs: Any) -> Any:
        self.calls += 1
        out = self.model(*inputs)
        if self.static is None:
            self.static = out.clone()
        else:
            self.static.copy_(out)  # the replay writes where it wrote last time
        return self.static


@pytest.fixture
def graph_trees(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {"marks": 0, "modes": []}

    def compile(model: Any, mode: str | None = None) -> GraphTree:
        seen["modes"].append(mode)
        seen["tree"] = GraphTree(model)
        return seen["tree"]

    def mark_step() -> None:
        seen["marks"] += 1

    monkeypatch.setattr(torch, "compile", compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", mark_step)
    return seen


def test_outputs_kept_across_calls_keep_their_values(graph_trees: dict[str, Any]) -> None:
    """The model path keeps the gate's first output while it calls on fresh inputs, the
    engine keeps the warm-up output and the one after timing: none may be overwritten."""
    model = torch.nn.Linear(3, 2).eval()
    backend = CompileBackend()
    first_in, second_in = torch.ones(1, 3), torch.full((1, 3), 2.0)
    run = backend.prepare(model, (first_in,), CudaOnHost(), "fp32")
    first = run(first_in)
    second = run(second_in)
    with torch.no_grad():
        assert torch.equal(first, model(first_in))
        assert torch.equal(second, model(second_in))
    assert graph_trees["modes"] == ["reduce-overhead"]
    assert graph_trees["marks"] == graph_trees["tree"].calls == 3  # a step per call
    facts = backend.describe()
    assert facts["cuda_graphs"] is True and facts["outputs_copied"] is True


def test_modes_without_cuda_graphs_return_outputs_as_they_are(
        graph_trees: dict[str, Any]) -> None:
    backend = CompileBackend(mode="max-autotune-no-cudagraphs")
    run = backend.prepare(torch.nn.Identity(), (torch.ones(2),), CudaOnHost(), "fp32")
    run(torch.ones(2))
    assert graph_trees["marks"] == 0
    assert backend.describe()["cuda_graphs"] is False


def test_triton_needs_a_c_compiler_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton builds its launcher with $CC, else gcc, else clang: without one the backend
    is unavailable with the reason, not a failure at the first call."""
    monkeypatch.setattr(torch_backends, "missing_modules", lambda modules: None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = CompileBackend().unavailable_reason(CudaOnHost())
    assert reason == ("inductor on CUDA needs a C compiler for Triton (gcc or clang on PATH, "
                      "or CC set)")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/clang" if name == "clang"
                        else None)
    assert CompileBackend().unavailable_reason(CudaOnHost()) is None
    monkeypatch.setenv("CC", "my-cc")
    assert CompileBackend().unavailable_reason(CudaOnHost()) == (
        "inductor on CUDA: Triton's C compiler CC='my-cc' is not on PATH")


def test_triton_missing_is_the_reason_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_backends, "missing_modules",
                        lambda modules: "triton not installed" if "triton" in modules else None)
    assert "needs Triton" in str(CompileBackend().unavailable_reason(CudaOnHost()))
