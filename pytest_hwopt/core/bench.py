"""The object behind the ``hwopt_bench`` fixture: collects variants, measures them together."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from pytest_hwopt.core.accuracy import Tolerance
from pytest_hwopt.core.calls import check_callable
from pytest_hwopt.core.engine import Decided, Engine, Fn, RunResult, Setup, Variant
from pytest_hwopt.core.generation import GenerationSource, MarkingTimer
from pytest_hwopt.core.measurement import Measurement, MeasurementExtra
from pytest_hwopt.core.specs import Spec

#: around a run: holds the device, watches it, and yields what it saw (filled on exit)
Around = AbstractContextManager[Mapping[str, object]]


class PrepareModel(Protocol):
    """The model path: prepares ``module`` on a backend and registers it on ``bench``.

    ``module`` and ``example_inputs`` are the caller's model and inputs (torch objects,
    which this package's core never imports). Returns the variant's name.
    """

    def __call__(self, bench: Bench, module: Any, example_inputs: Any, *, precision: str,
                 name: str | None, backend: str | None) -> str: ...


class PrepareGeneration(Protocol):
    """The generation path: one greedy ``model.generate(...)`` per call, each new token's
    time recorded (:mod:`pytest_hwopt.backends.generation`). ``model`` and ``input_ids``
    are the caller's (torch objects, which this package's core never imports)."""

    def __call__(self, name: str, model: Any, input_ids: Any, *, max_new_tokens: int,
                 attention_mask: Any, generate_kwargs: dict[str, Any]) -> GenerationSource: ...


class Bench:
    """Variants registered by a test, measured interleaved after the test body or on ``run()``.

    Collaborators are passed in so this class knows nothing of pytest: the engine,
    a factory for the "is every verdict clear?" callback (given this bench), and a context manager
    around the run (holds the device, watches it) that yields a dict of telemetry.
    With ``timing=False`` (``--hwopt-disable``) each variant is called once, untimed in
    all but that one call (:meth:`Engine.run_once`). :meth:`close` closes the engine's
    event loop (awaitable variants), at the end of the test.
    """

    def __init__(self, engine: Engine,
                 decided: Callable[[Bench], Decided | None] = lambda bench: None,
                 around_run: Callable[[], Around] | None = None,
                 prepare_model: PrepareModel | None = None,
                 after_run: Callable[[Bench], None] | None = None,
                 capture: Callable[[Fn], Fn] | None = None,
                 timing: bool = True,
                 ) -> None:
        self._engine = engine
        #: False: each variant is called once, and no timing budget is judged
        self.timing = timing
        self._decided = decided
        self._around = around_run
        #: what the device reported while the variants ran (NVML on CUDA)
        self.telemetry: Mapping[str, object] = {}
        #: derived figures a test noted (numbers, or any JSON value)
        self.notes: dict[str, object] = {}
        self._prepare_model = prepare_model
        self._after_run = after_run
        self._capture = capture  # CUDA graph capture, on a GPU only
        self.variants: dict[str, Variant] = {}
        self.result: RunResult | None = None
        self.tolerances: dict[str, Tolerance] = {}  # variant -> its default tolerance
        #: budgets a preparation adds (the model path's accuracy gate)
        self.implicit_specs: list[Spec] = []
        #: variants that are references, never candidates (the model path's eager run)
        self.references: set[str] = set()
        #: generation variants (:meth:`generate`): name -> how its calls are made and logged
        self.generations: dict[str, GenerationSource] = {}
        #: the generation path, set by the plugin (None outside a pytest session)
        self.prepare_generation: PrepareGeneration | None = None

    def measure(self, name: str, fn: Fn, *, setup: Setup | None = None, items: int = 1,
                bytes: float | None = None, flops: float | None = None,
                cuda_graph: bool = False) -> None:
        """Register variant ``name``: ``fn()``'s return value is the output.

        ``setup`` runs before every call of ``fn``, outside the timed region; when it
        returns something other than None, ``fn`` is called with that value as its one
        argument (fresh state for a call that changes its input, e.g. sorts it in place).
        An awaitable ``fn`` returns (a coroutine, a future; ``fn`` may be an ``async def``
        function) is awaited inside the timed call on the engine's event loop; a generator
        or other lazy iterator is refused (:mod:`pytest_hwopt.core.calls`).
        ``items`` is how many items one call processes (for throughput);
        ``bytes``/``flops`` the memory traffic and arithmetic of one call (roofline);
        ``cuda_graph`` captures ``fn`` in a CUDA graph and times its replay (GPU only).
        Raises ``TypeError`` for a ``fn`` or ``setup`` that is not a callable (a coroutine
        or a generator passed instead of a function: with the fix), ``ValueError`` for the
        other arguments.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"hwopt_bench.measure: name must be a non-empty string, got {name!r}")
        if name in self.variants:
            raise ValueError(f"hwopt_bench.measure: variant {name!r} is already registered")
        check_callable(name, fn)
        if setup is not None and not callable(setup):
            raise TypeError(f"hwopt_bench.measure({name!r}): setup must be a callable without "
                            f"arguments (or None), got {type(setup).__name__}")
        if isinstance(items, bool) or not isinstance(items, int) or items < 1:
            raise ValueError(f"hwopt_bench.measure({name!r}): items must be an int >= 1, "
                             f"got {items!r}")
        extra = MeasurementExtra()
        if bytes is not None:
            extra["bytes"] = _work(name, "bytes", bytes)
        if flops is not None:
            extra["flops"] = _work(name, "flops", flops)
        if cuda_graph:
            if self._capture is None:
                raise ValueError(f"hwopt_bench.measure({name!r}): cuda_graph=True needs a "
                                 "CUDA device")
            if setup is not None:
                raise ValueError(f"hwopt_bench.measure({name!r}): cuda_graph=True replays one "
                                 "captured call, which cannot take a setup's fresh state")
            extra["cuda_graph"] = True
            fn = self._capture(fn)
        self.variants[name] = Variant(name, fn, items, extra=extra, setup=setup)
        self.result = None

    def generate(self, name: str, model: Any, input_ids: Any, *, max_new_tokens: int,
                 attention_mask: Any = None, **generate_kwargs: Any) -> None:
        """Register generation variant ``name``: each call is one greedy
        ``model.generate(input_ids, ...)`` forced to exactly ``max_new_tokens`` new tokens
        (``min_new_tokens`` too), with the time of every new token recorded.

        ``input_ids``: (batch, prompt length) token ids; ``generate_kwargs`` go to
        ``generate`` as they are (``cache_implementation="static"``, ``use_cache=False``).
        The output is the new tokens' ids, (batch, max_new_tokens). The results hold TTFT,
        TPOT and ITL percentiles (ms), ``output_tokens`` and ``tokens_per_s``
        (:class:`pytest_hwopt.core.generation.GenerationMeasurement`); ``items`` is
        batch x ``max_new_tokens``, so a throughput is new tokens per second.
        Raises ``ValueError`` for a bad name or ``max_new_tokens``, or a generation
        setting that contradicts greedy decoding of exactly that many tokens.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"hwopt_bench.generate: name must be a non-empty string, "
                             f"got {name!r}")
        if name in self.variants:
            raise ValueError(f"hwopt_bench.generate: variant {name!r} is already registered")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or max_new_tokens < 1:
            raise ValueError(f"hwopt_bench.generate({name!r}): max_new_tokens must be an int "
                             f">= 1, got {max_new_tokens!r}")
        if self.prepare_generation is None:
            raise RuntimeError("hwopt_bench.generate() is only available inside a pytest "
                               "session")
        source = self.prepare_generation(name, model, input_ids, max_new_tokens=max_new_tokens,
                                         attention_mask=attention_mask,
                                         generate_kwargs=dict(generate_kwargs))
        timer = self._engine.timer
        if not isinstance(timer, MarkingTimer):  # tells the logs which calls were samples
            timer = self._engine.timer = MarkingTimer(timer)
        timer.logs.append(source.log)
        if not self.generations:  # the stop rule reads TTFT and TPOT between rounds
            decided = self._decided

            def with_generation(bench: Bench) -> Decided | None:
                rule = decided(bench)
                if rule is None:
                    return None
                return lambda ms: rule(self._with_generation(dict(ms), final=False))

            self._decided = with_generation
        self.variants[name] = Variant(name, source.fn, source.items, extra=source.extra)
        self.generations[name] = source
        self.result = None

    def _with_generation(self, measurements: dict[str, Measurement], *, final: bool
                         ) -> dict[str, Measurement]:
        """``measurements`` with each generation variant's as a
        :class:`~pytest_hwopt.core.generation.GenerationMeasurement` (token ids only when
        ``final``: after the run)."""
        for name, source in self.generations.items():
            m = measurements.get(name)
            if m is not None:
                measurements[name] = source.measurement(m, with_ids=final)
                ran = dict(measurements[name].extra).get("attention_backends")
                if final and isinstance(ran, list):  # the report shows which kernels ran
                    self.notes[f"attention {name}"] = ", ".join(map(str, ran)) or "none"
        return measurements

    def note(self, name: str, value: object) -> None:
        """Attach a derived figure to this test's results (JSON ``notes``, the summary)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"hwopt_bench.note: name must be a non-empty string, got {name!r}")
        self.notes[name] = value

    def add(self, variant: Variant, tolerance: Tolerance | None = None) -> None:
        """Register a prepared variant (the model path)."""
        if variant.name in self.variants:
            raise ValueError(f"hwopt_bench: variant {variant.name!r} is already registered")
        self.variants[variant.name] = variant
        if tolerance is not None:
            self.tolerances[variant.name] = tolerance
        self.result = None

    def model(self, module: Any, example_inputs: Any, *, precision: str = "fp32",
              name: str | None = None, backend: str | None = None) -> str:
        """Prepare ``module`` and register it beside the eager reference ``pytorch``.

        The backend is the test's ``hwopt_backend``, or ``backend=`` to compare
        several prepared variants in one test. Returns the variant's name.
        """
        if self._prepare_model is None:
            raise RuntimeError("hwopt_bench.model() is only available inside a pytest session")
        return self._prepare_model(self, module, example_inputs, precision=precision, name=name,
                                   backend=backend)

    def run(self) -> Mapping[str, Measurement]:
        """Measure all registered variants now; name -> :class:`Measurement`."""
        if not self.variants:
            raise RuntimeError("hwopt_bench.run(): no variants; register some with measure()")
        if self.result is None:
            for source in self.generations.values():
                source.log.clear()  # calls of an earlier run are not this run's
            if self._around is None:
                self.result = self._run()
            else:
                with self._around() as seen:
                    self.result = self._run()
                self.telemetry = seen
            self._with_generation(self.result.measurements, final=True)
            if self._after_run is not None:
                self._after_run(self)  # derived figures (roofline, energy) before anyone reads
        return self.result.measurements

    def _run(self) -> RunResult:
        variants = list(self.variants.values())
        if not self.timing:
            return self._engine.run_once(variants)
        return self._engine.run(variants, self._decided(self))

    def call_of(self, name: str) -> Callable[[], Any]:
        """One complete call of measured variant ``name``, as the engine makes it (setup,
        awaiting); for figures taken after the run (energy)."""
        return self._engine.call_of(name)

    def close(self) -> None:
        """Release what the run holds (the engine's event loop); idempotent."""
        self._engine.close()


def _work(name: str, key: str, value: object) -> float:
    """A declared amount of work per call (bytes or FLOPs): a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"hwopt_bench.measure({name!r}): {key} must be a "
                         f"positive number, got {value!r}")
    return float(value)
