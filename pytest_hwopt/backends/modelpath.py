"""``hwopt_bench.model``: prepare a module on a backend, gate it on correct outputs, register it.

:class:`ModelPath` is the whole path, free of pytest. Its failures are
:class:`Unavailable` (the test skips), :class:`BackendError` (a stage failed) and
:class:`WrongOutputs` (the gate closed; both fail the test), and :class:`ValueError`
(the call itself is wrong). Backends may raise :class:`Unsupported` from ``prepare``.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from pytest_hwopt.backends.base import (
    Backend,
    BackendError,
    failure_text,
    known_fix,
    with_fix,
)
from pytest_hwopt.core.accuracy import TOLERANCES, Tolerance, accuracy_check
from pytest_hwopt.core.bench import Bench
from pytest_hwopt.core.checks import FAILED
from pytest_hwopt.core.engine import Variant
from pytest_hwopt.core.measurement import MeasurementExtra
from pytest_hwopt.core.specs import Spec

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device

#: the backend every candidate is compared with, registered as a reference variant
REFERENCE: Final = "pytorch"


class Unavailable(Exception):
    """The model cannot be prepared here; ``str(exc)`` is the whole skip reason ("hwopt: ...")."""


class Unsupported(Exception):
    """The backend cannot prepare this model here (``str(exc)`` without the "hwopt: " prefix).

    :meth:`ModelPath.prepare` turns it into :class:`Unavailable`.
    """


class WrongOutputs(AssertionError):
    """The candidate's outputs differ from eager PyTorch beyond the tolerance."""


def variant_name(backend: str, precision: str) -> str:
    """The candidate's default variant name: ``onnxruntime``, ``tensorrt-fp16``."""
    return backend if precision == "fp32" else f"{backend}-{precision}"


class ModelPath:
    """Prepares models on backends for one test and registers them with its :class:`Bench`.

    ``backends`` returns name -> backend; it is called by :meth:`prepare` only, so the
    backends hook runs only for tests that prepare a model. ``threads`` is the CPU
    thread count every variant runs with; ``seed`` makes the fresh random inputs of the
    output gate reproducible. ``accuracy_override(candidate)`` is the tolerance a test's
    accuracy budget sets for that variant, or None for the precision's default.
    ``on_progress`` receives lines such as ``"preparing onnxruntime"``: for backends
    that are slow to prepare, or for every backend when ``announce_all``.
    ``fixture_backend`` is the backend of the ``hwopt_backend`` parameter, if any.
    """

    def __init__(self, backends: Callable[[], Mapping[str, Backend]], device: Device, *,
                 threads: int, seed: int,
                 accuracy_override: Callable[[str], Tolerance | None],
                 on_progress: Callable[[str], None] | None = None,
                 fixture_backend: str | None = None, announce_all: bool = False) -> None:
        self._backends = backends
        self.device = device
        self.threads = threads
        self.seed = seed
        self._accuracy_override = accuracy_override
        self._on_progress = on_progress
        self.fixture_backend = fixture_backend
        self.announce_all = announce_all
        self._eager: list[_Eager] = []  # the eager references registered so far

    def prepare(self, bench: Bench, module: Any, example_inputs: Any, *,
                precision: str = "fp32", name: str | None = None,
                backend: str | None = None) -> str:
        """Prepare ``module`` on ``backend`` (default: the fixture's) and register it
        beside the eager reference; returns the candidate's variant name.

        ``example_inputs`` is one input or a tuple/list of them. Raises
        :class:`Unavailable` (skip), :class:`BackendError` or :class:`WrongOutputs`
        (fail), :class:`ValueError` (no or an unknown backend, an unknown precision).
        """
        chosen = backend or self.fixture_backend
        if chosen is None:
            raise ValueError("hwopt_bench.model(): pass backend=<name> or request the "
                             "hwopt_backend fixture")
        backends = self._backends()
        if chosen not in backends:
            raise ValueError(f"hwopt_bench.model(): unknown backend {chosen!r}; known: "
                             f"{', '.join(backends)}")
        reason = backends[chosen].unavailable_reason(self.device)
        if reason:
            raise Unavailable(f"hwopt: backend {chosen} unavailable on "
                              f"{self.device.torch_device}: {reason}")
        tolerance = self._accuracy_override(name or variant_name(chosen, precision))
        announce = backends[chosen].slow_to_prepare or self.announce_all
        try:
            return self._register(bench, backends, chosen, module, example_inputs, precision,
                                  name, tolerance, self._on_progress if announce else None)
        except Unsupported as exc:
            raise Unavailable(f"hwopt: {exc}") from exc

    def _register(self, bench: Bench, backends: Mapping[str, Backend], backend_name: str,
                  module: Any, example_inputs: Any, precision: str, name: str | None,
                  tolerance: Tolerance | None, on_progress: Callable[[str], None] | None
                  ) -> str:
        """Prepare and gate the candidate; Unsupported when the backend cannot."""
        import torch

        backend = backends[backend_name]
        if not isinstance(example_inputs, (tuple, list)):
            example_inputs = (example_inputs,)
        if precision not in TOLERANCES and precision not in backend.precisions:
            raise ValueError(f"hwopt_bench.model: unknown precision {precision!r}; "
                             f"use one of {', '.join(TOLERANCES)}")
        if precision not in backend.precisions:
            raise Unsupported(f"backend {backend_name} does not support precision {precision} "
                              f"(supports {', '.join(backend.precisions)})")
        candidate_name = name or variant_name(backend_name, precision)
        if candidate_name in bench.variants:
            raise ValueError(f"hwopt_bench.model: variant {candidate_name!r} is already "
                             "registered; pass name=<another name>")
        device = self.device
        if device.kind == "cpu":
            torch.set_num_threads(self.threads)  # every variant gets the same thread count
        model, inputs = _place(module, example_inputs, device)
        tol = tolerance or TOLERANCES.get(precision, TOLERANCES["fp32"])
        reference = backends[REFERENCE].prepare(model, inputs, device, "fp32")
        with torch.inference_mode():
            expected = reference(*inputs)
        _refuse_known_outputs(expected)
        if on_progress:
            on_progress(f"preparing {candidate_name}")
        prepared, prepare_s, warned = _timed_prepare(backend, backend_name, model, inputs,
                                                     device, precision)
        facts = _jsonable(backend.describe())
        cached = from_cache(facts)
        if on_progress:
            on_progress(f"{candidate_name} ready in {prepare_s:.1f} s"
                        + (" (prepared from the cache)" if cached else ""))

        def run(*args: Any) -> Any:
            return _shaped_like(expected, prepared(*args))

        fresh = random_like(inputs, self.seed)
        with torch.inference_mode():
            fresh_expected = reference(*fresh)
        pairs = [("", run(*inputs), expected),
                 (" on fresh random inputs", run(*fresh), fresh_expected)]
        # the reference of this module and these inputs: each candidate is gated and
        # measured against the eager run of what it was prepared from
        ref_name = self._eager_reference(bench, model, inputs, reference, candidate_name)
        check = accuracy_check(candidate_name, ref_name, pairs, tol.atol, tol.rtol,
                               rel_l2=tol.rel_l2)
        if check.status == FAILED:
            raise WrongOutputs(check.message)
        # the backend's facts go under keys MeasurementExtra does not list
        extra = cast(MeasurementExtra, {"backend": backend_name, "precision": precision,
                                        "preparation_warnings": warned[:10],
                                        "reference": ref_name, **facts,
                                        **({} if cached is None else {"from_cache": cached})})
        bench.add(Variant(candidate_name, lambda: run(*inputs), prepare_s=prepare_s,
                          extra=extra), tolerance=tol)
        bench.implicit_specs.append(Spec("accuracy", {}, vs=ref_name, of=candidate_name))
        return candidate_name

    def _eager_reference(self, bench: Bench, model: Any, inputs: tuple[Any, ...],
                         reference: Callable[..., Any], candidate: str) -> str:
        """The variant name of the eager run of ``model`` on ``inputs``, registered on first
        use. One module and inputs: ``pytorch``. Once a test prepares another module or
        other inputs, each eager run is named after its first candidate
        (``pytorch-ort-bs64``, ``pytorch-ort-bs1``) and ``vs="pytorch"`` means the
        candidate's own (:func:`~pytest_hwopt.core.verdicts.assign_roles`)."""
        for known in self._eager:
            if known.module is model and _same_inputs(known.inputs, inputs):
                known.candidates.append(candidate)
                return known.name
        if not self._eager:
            if REFERENCE in bench.references:  # registered by register() on this bench
                return REFERENCE
            if REFERENCE in bench.variants:
                raise ValueError(f"hwopt_bench.model: a variant is already named "
                                 f"{REFERENCE!r}, the name of the eager reference; name it "
                                 "differently in measure()")
            name = REFERENCE
        else:
            first = self._eager[0]
            if first.name == REFERENCE:  # a second module or other inputs: name both
                _rename(bench, REFERENCE, _own_name(first.candidates[0]))
                first.name = _own_name(first.candidates[0])
            name = _own_name(candidate)
        self._eager.append(_Eager(model, inputs, name, [candidate]))
        bench.references.add(name)
        bench.add(Variant(name, lambda: reference(*inputs), prepare_s=0.0,
                          extra={"backend": REFERENCE, "precision": "fp32"}))
        return name


@dataclass
class _Eager:
    """An eager reference registered for one module and its inputs."""

    module: Any
    inputs: tuple[Any, ...]
    name: str
    candidates: list[str]


def _own_name(candidate: str) -> str:
    """``pytorch-<candidate>``: the eager reference of one candidate's module and inputs."""
    return f"{REFERENCE}-{candidate}"


def _rename(bench: Bench, old: str, new: str) -> None:
    """Rename a registered reference variant wherever the bench refers to it."""
    if new in bench.variants:
        raise ValueError(f"hwopt_bench.model: a variant is already named {new!r}, the name "
                         "of an eager reference; name it differently")
    bench.variants = {(new if k == old else k): v for k, v in bench.variants.items()}
    bench.variants[new].name = new
    bench.references.discard(old)
    bench.references.add(new)
    bench.implicit_specs[:] = [dataclasses.replace(s, vs=new) if s.vs == old else s
                               for s in bench.implicit_specs]
    for variant in bench.variants.values():
        facts = cast(dict[str, Any], variant.extra)
        if facts.get("reference") == old:
            facts["reference"] = new


def _same_inputs(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """The same inputs: the same objects, or tensors of one shape, dtype, device and value."""
    import torch

    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x is y:
            continue
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if (x.shape != y.shape or x.dtype != y.dtype or x.device != y.device
                    or not torch.equal(x, y)):
                return False
            continue
        try:
            if not bool(x == y):
                return False
        except Exception:  # an object whose == gives no single truth value
            return False
    return True


def from_cache(facts: Mapping[str, Any]) -> bool | None:
    """Whether the backend's artefacts came from the cache (every ``*_cached`` fact true);
    None when it reports no cached artefact."""
    flags = [v for k, v in facts.items() if k.endswith("_cached") and isinstance(v, bool)]
    return all(flags) if flags else None


def _refuse_known_outputs(expected: Any) -> None:
    """A BackendError with the fix when the eager output holds an object no backend can
    return (a transformers ``DynamicCache``): found before any export is tried."""
    from pytest_hwopt.core.outputs import flatten  # NumPy, loaded with torch here

    for path, leaf in flatten(expected):
        kind = type(leaf).__name__
        if known_fix(kind) is not None:
            raise BackendError(with_fix(f"{path} of the model is a {kind}, not a tensor",
                                        kind))


def register(bench: Bench, backends: Mapping[str, Backend], backend_name: str, module: Any,
             example_inputs: Any, device: Device, precision: str, name: str | None,
             threads: int, tolerance: Tolerance | None = None, seed: int = 0,
             on_progress: Callable[[str], None] | None = None) -> str:
    """Prepare ``module`` on the backend and register it with the eager reference.

    The model path without the availability check: :class:`Unsupported` is raised as it
    is. Returns the candidate's variant name. Prefer :meth:`ModelPath.prepare`.
    """
    path = ModelPath(lambda: backends, device, threads=threads, seed=seed,
                     accuracy_override=lambda _candidate: tolerance)
    return path._register(bench, backends, backend_name, module, example_inputs, precision,
                          name, tolerance, on_progress)


def _timed_prepare(backend: Backend, backend_name: str, model: Any, inputs: Sequence[Any],
                   device: Device, precision: str
                   ) -> tuple[Callable[..., Any], float, list[str]]:
    """``(prepared callable, seconds it took, distinct warnings raised meanwhile)``.

    A backend's own exception becomes a BackendError naming the backend.
    """
    start = time.perf_counter()
    try:
        # exporters and converters warn a lot (deprecations inside torch.jit); a project
        # running with filterwarnings=error must not fail on warnings it cannot act on
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prepared = backend.prepare(model, inputs, device, precision)
    except (BackendError, Unsupported):
        raise
    except Exception as exc:  # a backend's own failure names its stage
        raise BackendError(with_fix(f"{backend_name} preparation failed: {failure_text(exc)}",
                                    exc)) from exc
    prepare_s = time.perf_counter() - start
    warned = sorted({f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught})
    return prepared, prepare_s, warned


def _shaped_like(expected: Any, out: Any) -> Any:
    """A runtime's flat outputs arranged like the eager module's: an exporter flattens
    nested tuples, lists and dicts (``ModelOutput`` included) in order and drops ``None``
    outputs. Left as they are when the counts differ (the comparison then says how)."""
    if isinstance(out, (tuple, list)) and len(out) == _leaf_count(expected) \
            and all(not isinstance(o, (tuple, list, Mapping)) for o in out):
        return restructure(expected, out)
    return out


def _leaf_count(node: Any) -> int:
    """Outputs an exporter writes for ``node``: its tensors, ``None`` not counted."""
    if node is None:
        return 0
    if isinstance(node, Mapping):
        return sum(_leaf_count(v) for v in node.values())
    if isinstance(node, (tuple, list)):
        return sum(_leaf_count(v) for v in node)
    return 1


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
    """Arrange a flat sequence of outputs like the eager module's (tensor, tuple, list, dict
    or other mapping, which becomes a dict); ``None`` in ``template`` stays ``None`` and
    takes no output, as exporters drop it.

    BackendError when ``flat`` has fewer outputs than ``template`` holds.
    """
    leaves = iter(flat)

    def build(node: Any) -> Any:
        if node is None:
            return None
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


def _place(module: Any, example_inputs: Sequence[Any], device: Device
           ) -> tuple[Any, tuple[Any, ...]]:
    """The module in eval mode and the inputs, both on the device.

    As ``module.to(device).eval()`` does, this changes the caller's module in place (its
    mode, and its device off the CPU): the measured module is the one the test holds.
    """
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
