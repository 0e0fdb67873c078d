"""``hwopt_bench.model``: prepare a module on a backend, gate it on correct outputs, register it.

Free of pytest: failures are :class:`BackendError` (a stage failed),
:class:`Unsupported` (skip) or :class:`WrongOutputs` (the gate closed).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Mapping, Sequence

from pytest_hwopt.backends.base import Backend, BackendError
from pytest_hwopt.core.bench import Bench
from pytest_hwopt.core.engine import Variant
from pytest_hwopt.core.specs import TOLERANCES, Spec, Tolerance

REFERENCE = "pytorch"


class Unsupported(Exception):
    """The backend cannot prepare this model here; the test skips with this reason."""


class WrongOutputs(AssertionError):
    """The candidate's outputs differ from eager PyTorch beyond the tolerance."""


def variant_name(backend: str, precision: str) -> str:
    return backend if precision == "fp32" else f"{backend}-{precision}"


def random_like(inputs: Sequence[Any], seed: int) -> tuple[Any, ...]:
    """Fresh inputs of the same shapes and dtypes: a graph with baked-in values fails on them."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for x in inputs:
        if not isinstance(x, torch.Tensor):
            out.append(x)
        elif x.is_floating_point():
            out.append(torch.randn(x.shape, generator=gen, dtype=torch.float32)
                       .to(dtype=x.dtype, device=x.device))
        elif x.dtype == torch.bool:
            out.append(torch.randint(0, 2, x.shape, generator=gen).bool().to(x.device))
        else:
            lo = int(x.min()) if x.numel() else 0
            hi = int(x.max()) + 1 if x.numel() else 1
            out.append(torch.randint(lo, max(hi, lo + 1), x.shape, generator=gen,
                                     dtype=x.dtype).to(x.device))
    return tuple(out)


def restructure(template: Any, flat: Sequence[Any]) -> Any:
    """Arrange a flat sequence of outputs like the eager module's (tensor, tuple, list, dict)."""
    leaves = iter(flat)

    def build(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: build(v) for k, v in node.items()}
        if isinstance(node, (tuple, list)):
            return type(node)(build(v) for v in node)
        return next(leaves)

    try:
        return build(template)
    except StopIteration:
        raise BackendError(f"backend returned {len(flat)} output(s); the eager model returns "
                           "more") from None


def register(bench: Bench, backends: Mapping[str, Backend], backend_name: str, module: Any,
             example_inputs: Any, device: Any, precision: str, name: str | None,
             threads: int, tolerance: Tolerance | None = None, seed: int = 0,
             on_progress: Callable[[str], None] | None = None) -> str:
    """Prepare ``module`` on the backend and register it with the eager reference.

    Returns the candidate's variant name.
    """
    import torch

    from pytest_hwopt.core import verdicts as budgets

    backend = backends[backend_name]
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    if precision not in TOLERANCES and precision not in backend.precisions:
        raise ValueError(f"hwopt_bench.model: unknown precision {precision!r}; "
                         f"use one of {', '.join(TOLERANCES)}")
    if precision not in backend.precisions:
        raise Unsupported(f"backend {backend_name} does not support precision {precision} "
                          f"(supports {', '.join(backend.precisions)})")
    if device.kind == "cpu":
        torch.set_num_threads(threads)  # every variant gets the same explicit thread count
    model, inputs = _place(module, example_inputs, device)
    tol = tolerance or TOLERANCES.get(precision, TOLERANCES["fp32"])
    reference = backends[REFERENCE].prepare(model, inputs, device, "fp32")
    with torch.inference_mode():
        expected = reference(*inputs)
    bench.references.add(REFERENCE)
    if REFERENCE not in bench.variants:
        bench.add(Variant(REFERENCE, lambda: reference(*inputs), prepare_s=0.0,
                          extra={"backend": REFERENCE, "precision": "fp32"}))
    candidate_name = name or variant_name(backend_name, precision)
    if on_progress:
        on_progress(f"preparing {candidate_name}")
    start = time.perf_counter()
    try:
        # exporters and converters warn a lot (deprecations inside torch.jit); a project
        # running with filterwarnings=error must not fail on warnings it cannot act on
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prepared = backend.prepare(model, inputs, device, precision)
    except (BackendError, Unsupported):
        raise
    except Exception as exc:  # noqa: BLE001 - a backend's own failure names its stage
        raise BackendError(f"{backend_name} preparation failed: {type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                           ) from exc
    prepare_s = time.perf_counter() - start
    if on_progress:
        on_progress(f"{candidate_name} ready in {prepare_s:.1f} s")
    warned = sorted({f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught})

    def run(*args: Any) -> Any:
        out = prepared(*args)
        if isinstance(out, (tuple, list)) and not isinstance(expected, (tuple, list, dict)):
            return restructure(expected, out)
        if isinstance(expected, dict) and isinstance(out, (tuple, list)):
            return restructure(expected, out)
        return out

    fresh = random_like(inputs, seed)
    with torch.inference_mode():
        fresh_expected = reference(*fresh)
    pairs = [("", run(*inputs), expected), (" on fresh random inputs", run(*fresh),
                                            fresh_expected)]
    check = budgets.accuracy_check(candidate_name, REFERENCE, pairs, tol.atol, tol.rtol,
                                   rel_l2=tol.rel_l2)
    if check.status == budgets.FAILED:
        raise WrongOutputs(check.message)
    bench.add(Variant(candidate_name, lambda: run(*inputs), prepare_s=prepare_s,
                      extra={"backend": backend_name, "precision": precision,
                             "preparation_warnings": warned[:10],
                             **_jsonable(backend.describe())}),
              tolerance=tol)
    bench.implicit_specs.append(Spec("accuracy", {}, vs=REFERENCE, of=candidate_name))
    return candidate_name


def _place(module: Any, example_inputs: Sequence[Any], device: Any) -> tuple[Any, tuple[Any, ...]]:
    target = device.torch_device
    inputs = tuple(x.to(target) if hasattr(x, "to") else x for x in example_inputs)
    return module.to(target).eval(), inputs


def _jsonable(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Backend facts reduced to JSON types (they travel between pytest-xdist workers)."""
    def clean(v: Any) -> Any:
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return str(v)

    return {str(k): clean(v) for k, v in facts.items()}
