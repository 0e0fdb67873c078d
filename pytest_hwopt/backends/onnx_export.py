"""``torch.onnx.export`` with the dynamo exporter, falling back to TorchScript, checked."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pytest_hwopt.backends.base import BackendError, failure_text, with_fix

#: exporters tried in order: ``torch.onnx.export(dynamo=True)``, then TorchScript
EXPORTERS: Final[tuple[str, ...]] = ("dynamo", "torchscript")


def input_names(count: int) -> list[str]:
    return [f"input_{i}" for i in range(count)]


def export(model: Any, example_inputs: Sequence[Any], path: Path,
           exporters: Sequence[str] = EXPORTERS,
           dynamic_axes: dict[int, dict[int, str]] | None = None,
           optimize: bool = True) -> dict[str, Any]:
    """Export to ``path``; the facts say which exporter succeeded and why others failed.

    ``dynamic_axes`` maps input position -> {axis: name} for dynamic batch or
    sequence dimensions. ``optimize=False`` keeps the graph as the model wrote it
    (no constant folding, BatchNorm not folded): the baseline for measuring what a
    runtime's own graph optimiser does. Raises :class:`BackendError` ("ONNX export failed: ...",
    each exporter's innermost cause, and the fix of a known cause) when every exporter fails
    or the graph dropped inputs.
    """
    import torch

    tensors = [x for x in example_inputs if isinstance(x, torch.Tensor)]
    names = input_names(len(example_inputs))
    errors: list[str] = []
    failures: list[BaseException] = []
    for exporter in exporters:
        path.unlink(missing_ok=True)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                _export_with(torch, exporter, model, tuple(example_inputs), path, names,
                             dynamic_axes, optimize)
        except Exception as exc:  # each exporter's failure is reported
            # the cause, without the exporter's escape codes and bug-report boilerplate
            errors.append(f"{exporter}: {failure_text(exc)}")
            failures.append(exc)
            continue
        graph_inputs = _graph_inputs(path)
        if len(graph_inputs) != len(tensors):
            raise BackendError(
                f"ONNX export failed: the graph has {len(graph_inputs)} input(s) "
                f"({', '.join(graph_inputs) or 'none'}) but the model takes {len(tensors)} "
                f"tensor(s); the exporter ({exporter}) dropped or baked in inputs")
        return {"exporter": exporter, "fallback_from": errors, "graph_inputs": graph_inputs,
                "export_optimized": optimize}
    raise BackendError(with_fix("ONNX export failed: " + "; ".join(errors), *failures))


def _export_with(torch: Any, exporter: str, model: Any, args: tuple[Any, ...], path: Path,
                 names: list[str], dynamic_axes: dict[int, dict[int, str]] | None,
                 optimize: bool = True) -> None:
    if exporter == "dynamo":
        shapes = None
        if dynamic_axes:
            dims: dict[str, Any] = {}
            shapes = tuple(
                {axis: dims.setdefault(label, torch.export.Dim.DYNAMIC)
                 for axis, label in dynamic_axes.get(i, {}).items()} or None
                for i in range(len(args)))
        torch.onnx.export(model, args, str(path), dynamo=True, input_names=names,
                          dynamic_shapes=shapes, external_data=False, verbose=False,
                          optimize=optimize, do_constant_folding=optimize)
    elif exporter == "torchscript":
        axes = {names[i]: spec for i, spec in (dynamic_axes or {}).items()}
        torch.onnx.export(model, args, str(path), dynamo=False, input_names=names,
                          dynamic_axes=axes or None, opset_version=17,
                          do_constant_folding=optimize)
    else:
        raise ValueError(f"unknown exporter {exporter!r}; known: {', '.join(EXPORTERS)}")
    if not path.exists():
        raise BackendError(f"{exporter} exporter wrote no file")


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def op_counts(path: str | Path) -> dict[str, int]:
    """How often each operator type occurs in an ONNX file (fused ops included).

    Operators outside the default domain carry it: ``com.microsoft.nchwc:Conv``.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
