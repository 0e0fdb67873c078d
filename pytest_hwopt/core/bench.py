"""The object behind the ``hwopt_bench`` fixture: collects variants, measures them together."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

from pytest_hwopt.core.accuracy import Tolerance
from pytest_hwopt.core.calls import check_callable
from pytest_hwopt.core.contention import Contention
from pytest_hwopt.core.engine import Decided, Engine, Fn, RunResult, Setup, Variant
from pytest_hwopt.core.generation import GenerationSource, MarkingTimer
from pytest_hwopt.core.measurement import Measurement, MeasurementExtra
from pytest_hwopt.core.served import (
    LoadGenLoad,
    LoadGenMeasurement,
    RoundFigures,
    ServeLoad,
    ServeMeasurement,
)
from pytest_hwopt.core.specs import Spec

#: load runs of serve variants while a verdict stays unclear: at least this many (a ratio
#: of medians over paired rounds needs three), then until the time limit, at most
#: ``MAX_LOAD_ROUNDS``
MIN_UNCLEAR_LOAD_ROUNDS: Final = 3
MAX_LOAD_ROUNDS: Final = 20

#: one load run of a serve variant: (the load, the round's index: 0 is the first, which
#: warms the server up first) -> its figures (:mod:`pytest_hwopt.backends.serving`)
ServeRunner = Callable[[ServeLoad, int], RoundFigures]
#: one LoadGen test of a LoadGen variant -> its measurement
LoadGenRunner = Callable[[LoadGenLoad], LoadGenMeasurement]

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
        #: serve variants (:meth:`serve`) and LoadGen variants (:meth:`loadgen`)
        self.serves: dict[str, ServeLoad] = {}
        self.loadgens: dict[str, LoadGenLoad] = {}
        #: how they run, set by the plugin (None outside a pytest session)
        self.serve_runner: ServeRunner | None = None
        self.loadgen_runner: LoadGenRunner | None = None
        self._clock: Callable[[], float] = time.perf_counter

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
        if self._taken(name):
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
        if self._taken(name):
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

    def serve(self, name: str, base_url: str, *, prompts: Sequence[str], num_requests: int,
              rate: float = math.inf, burstiness: float = 1.0,
              max_concurrency: int | None = None, max_tokens: int = 64,
              model: str | None = None, endpoint: str = "completions", timeout_s: float = 60.0,
              seed: int = 0) -> None:
        """Register serve variant ``name``: a load run of ``num_requests`` streaming
        requests against the OpenAI-compatible server at ``base_url`` (``/v1/completions``,
        or ``endpoint="chat"`` for ``/v1/chat/completions``).

        Requests take ``prompts`` in turn and are sent at times drawn from a gamma process
        (shape ``burstiness``, mean gap ``1 / rate`` s: 1.0 is Poisson, ``math.inf`` sends
        all at once), at most ``max_concurrency`` in flight, each asking for ``max_tokens``
        tokens greedily (temperature 0), given up after ``timeout_s`` s. Latency counts
        from each request's scheduled send time, so queueing the client could not avoid
        is not hidden (coordinated omission). The results hold TTFT, TPOT, ITL and
        end-to-end percentiles (ms), ``request_throughput`` (completed requests/s),
        ``output_throughput`` (tokens/s), ``completed``, ``failed`` and
        ``send_lag_p99_ms`` (:class:`~pytest_hwopt.core.served.ServeMeasurement`).
        The server is warmed up with two requests first; a verdict still unclear after one
        load run gets more (the same schedule, ``seed`` + round), at least three for a
        ratio, then until ``--hwopt-max-time``. A failed request fails the test with its
        error unless ``hwopt.failures(max=...)`` allows it.
        Raises ``ValueError``/``TypeError`` naming a bad argument.
        """
        if isinstance(name, str) and self._taken(name):
            raise ValueError(f"hwopt_bench.serve: variant {name!r} is already registered")
        load = ServeLoad.make(name, base_url, prompts, num_requests, rate=rate,
                              burstiness=burstiness, max_concurrency=max_concurrency,
                              max_tokens=max_tokens, model=model, endpoint=endpoint,
                              timeout_s=timeout_s, seed=seed)
        if self.serve_runner is None:
            raise RuntimeError("hwopt_bench.serve() is only available inside a pytest session")
        self.serves[load.name] = load
        self.result = None

    def loadgen(self, name: str, fn: Callable[[Any], Any], *, scenario: str,
                samples: Sequence[Any], target_qps: float | None = None,
                target_latency_ms: float | None = None, min_duration_s: float = 10.0,
                min_queries: int | None = None) -> None:
        """Register LoadGen variant ``name``: ``fn(sample)`` answers one query sample as
        MLPerf LoadGen's system under test (``mlcommons-loadgen``, the ``loadgen`` extra)
        in ``scenario`` ("SingleStream", "Server" or "Offline") over the query sample
        library ``samples``; ``target_qps`` is the Server scenario's rate (required there)
        and the Offline scenario's expected QPS, ``target_latency_ms`` the Server latency
        bound; LoadGen runs at least ``min_duration_s`` s and ``min_queries`` queries.

        The figures are LoadGen's own: ``loadgen_result`` ("VALID"/"INVALID"), ``qps`` and
        its latency percentiles (``median_ms``, ``p95_ms``, ``p99_ms`` ...); an INVALID run
        fails every check of the variant with LoadGen's reason, and an exception in ``fn``
        fails it naming the sample. Raises ``ValueError``/``TypeError`` for bad arguments.
        """
        if isinstance(name, str) and self._taken(name):
            raise ValueError(f"hwopt_bench.loadgen: variant {name!r} is already registered")
        load = LoadGenLoad.make(name, fn, scenario=scenario, samples=samples,
                                target_qps=target_qps, target_latency_ms=target_latency_ms,
                                min_duration_s=min_duration_s, min_queries=min_queries)
        if self.loadgen_runner is None:
            raise RuntimeError("hwopt_bench.loadgen() is only available inside a pytest "
                               "session")
        self.loadgens[load.name] = load
        self.result = None

    def _taken(self, name: str) -> bool:
        return name in self.variants or name in self.serves or name in self.loadgens

    def note(self, name: str, value: object) -> None:
        """Attach a derived figure to this test's results (JSON ``notes``, the summary)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"hwopt_bench.note: name must be a non-empty string, got {name!r}")
        self.notes[name] = value

    def add(self, variant: Variant, tolerance: Tolerance | None = None) -> None:
        """Register a prepared variant (the model path)."""
        if self._taken(variant.name):
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
        if not (self.variants or self.serves or self.loadgens):
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
        if not variants:
            result = RunResult({}, 0, 0.0, "load runs", Contention(None, None, None))
        elif not self.timing:
            result = self._engine.run_once(variants)
        else:
            result = self._engine.run(variants, self._decided(self))
        if self.serves:
            self._serve_rounds(result)
        for load in self.loadgens.values():
            assert self.loadgen_runner is not None
            result.measurements[load.name] = self.loadgen_runner(load)
        return result

    def _serve_rounds(self, result: RunResult) -> None:
        """Load runs of every serve variant, interleaved (A B, then B A), until the
        verdicts are clear: one run when they are, at least
        :data:`MIN_UNCLEAR_LOAD_ROUNDS` while they are not, then until the time limit."""
        runner = self.serve_runner
        assert runner is not None
        loads = list(self.serves.values())
        if not self.timing:  # --hwopt-disable: one request each, to see that it answers
            loads = [dataclasses.replace(load, num_requests=1, rate=math.inf)
                     for load in loads]
        rule = self._decided(self) if self.timing else None
        rounds: dict[str, list[RoundFigures]] = {load.name: [] for load in loads}
        start = self._clock()
        for index in range(MAX_LOAD_ROUNDS):
            for load in (loads if index % 2 == 0 else loads[::-1]):
                rounds[load.name].append(runner(load, index))
            for load in loads:
                result.measurements[load.name] = ServeMeasurement.from_rounds(
                    load.name, rounds[load.name], load.describe())
            if rule is None or rule(dict(result.measurements)):
                break
            if index + 1 >= MIN_UNCLEAR_LOAD_ROUNDS \
                    and self._clock() - start >= self._engine.config.max_time_s:
                break
        for load in loads:  # the load generator's own lag is in every result; say so here too
            m = result.measurements[load.name]
            assert isinstance(m, ServeMeasurement)
            if m.client_behind:
                behind = sum(r.client_behind for r in m.load_rounds)
                self.notes[f"client behind: {load.name}"] = (
                    f"the load generator fell behind its schedule in {behind} of "
                    f"{len(m.load_rounds)} load run(s) (send lag p99 "
                    f"{m.send_lag_p99_ms:.3g} ms): latencies count from the scheduled "
                    "times, so they include that lag")

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
