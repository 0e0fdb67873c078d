"""The measurement engine: warm-up, calibration, interleaved rounds, adaptive stopping.

Free of pytest and torch: it gets its timer, clock and probes passed in, so a
fake timer drives it deterministically in tests.

Every sample is kept with its flag (disturbed: the process was kept from a CPU, as the
timer tells, :func:`~pytest_hwopt.core.timing.time_flagged`); a round's value is the
median of its block's undisturbed samples, and rounds are added while a variant has
fewer than :data:`~pytest_hwopt.core.measurement.MIN_CLEAN` undisturbed rounds.

Each call is made as :mod:`~pytest_hwopt.core.calls` says: a variant's ``setup`` runs
before every call, outside the timed region (so calls with a setup are timed one per
sample, never batched); an awaitable a variant returns is awaited inside the timed call
on the engine's event loop, which :meth:`Engine.close` closes; a lazy iterator is refused.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pytest_hwopt.core import contention as noise
from pytest_hwopt.core import stats
from pytest_hwopt.core.calls import Caller, EventLoop
from pytest_hwopt.core.measurement import MIN_CLEAN, Measurement, MeasurementExtra
from pytest_hwopt.core.timing import HostTimer, Timed, Timer, time_flagged

#: what a variant runs: a callable whose return value is its output (any value: an array, a
#: tensor, nested containers of them; an awaitable, awaited), called without arguments, or
#: with its setup's value
Fn = Callable[..., Any]
#: a variant's setup: called before every call, untimed; a value other than None is passed
#: to the variant's callable as its one argument
Setup = Callable[[], Any]
#: asked after each batch of rounds whether every verdict is clear
Decided = Callable[[Mapping[str, Measurement]], bool]


class MemoryProbe(Protocol):
    """What the engine asks of a memory probe (the hardware package's probes fit it).

    A probe may also have ``details``: a mapping of extra figures (MB) of its last
    :meth:`measure`, saved as ``extra["memory_details"]``.
    """

    @property
    def kind(self) -> str:
        """How the figure was measured, saved with each result as ``memory_kind``."""
        ...

    def measure(self, fn: Callable[[], object]) -> float | None:
        """Call ``fn`` once; MB needed above the starting point at its peak, or None."""
        ...


@dataclass(frozen=True)
class EngineConfig:
    """How long and how finely to measure. Times in ms unless named ``_s``."""

    warmup_ms: float = 50.0
    min_warmup_calls: int = 3  # compiled / graph-captured work needs about three calls
    min_sample_ms: float = 0.1  # grow calls per sample until the timer's cost is < 0.1%
    block_ms: float = 10.0  # one variant's share of a round
    min_rounds: int = 8
    max_time_s: float = 5.0  # for the rounds of all variants together
    max_rounds: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("warmup_ms", "min_sample_ms", "block_ms", "max_time_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.min_rounds < 3:
            raise ValueError(
                f"min_rounds must be at least 3 for an interval, got {self.min_rounds}")


#: the first call is this many times the steady-state median, and at least
#: :data:`FIRST_CALL_MIN_MS` longer, for the note that state may carry from call to call
FIRST_CALL_FACTOR: Final = 10.0
FIRST_CALL_MIN_MS: Final = 1.0


@dataclass
class Variant:
    """A callable to measure; its return value is its output (any value).

    ``setup`` (optional) runs before every call, untimed; when it returns something other
    than None, ``fn`` is called with that as its one argument.
    """

    name: str
    fn: Fn
    items: int = 1
    prepare_s: float | None = None
    extra: MeasurementExtra = field(default_factory=lambda: MeasurementExtra())
    setup: Setup | None = None


@dataclass
class RunResult:
    """Measurements of all variants of one run, and the conditions they were taken in."""

    measurements: dict[str, Measurement]
    rounds: int
    elapsed_s: float
    #: "decided", "time limit", "round limit", "min rounds", or "single call" (each
    #: variant called once, :meth:`Engine.run_once`)
    stopped: str
    contention: noise.Contention


@dataclass
class _Plan:
    variant: Variant
    caller: Caller
    call: Callable[[], Any]  # one call as timed, for a variant without setup
    calls_per_sample: int
    samples_per_block: int
    settle: bool
    samples: list[float] = field(default_factory=list)
    disturbed: list[bool] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)
    rounds_disturbed: list[bool] = field(default_factory=list)
    faults: int = 0
    calls: int = 0
    first_call_ms: float = 0.0
    warmup_calls: int = 0
    output: Any = None  # the first call's return value


class Engine:
    """Measures variants side by side in interleaved rounds until the verdict is clear."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        timer: Timer | None = None,
        clock: Callable[[], float] = time.perf_counter,
        memory: MemoryProbe | None = None,
        faults: Callable[[], int] = noise.minor_faults,
        cpu_snapshot: Callable[[], noise.CpuSnapshot] = noise.snapshot,
    ) -> None:
        self.config = config or EngineConfig()
        self.timer = timer or HostTimer()
        self._clock = clock
        self._memory = memory
        self._faults = faults
        self._snapshot = cpu_snapshot
        self._loop = EventLoop()  # awaitable outputs are awaited here; made on first need
        #: how each variant of the last run is called (:meth:`call_of`)
        self._callers: dict[str, Caller] = {}

    def close(self) -> None:
        """Close the event loop awaitable variants ran on (pending tasks cancelled);
        another run makes a new one. Idempotent."""
        self._loop.close()

    def call_of(self, name: str) -> Callable[[], Any]:
        """One complete call of variant ``name`` of the last run, as measured: its setup
        (if any) and its call, its awaitable awaited. KeyError for an unknown name."""
        return self._callers[name].once

    def run_once(self, variants: Sequence[Variant]) -> RunResult:
        """Call each variant once (its setup first) and time that call: the functional
        part alone (``--hwopt-disable``). Outputs are kept for the accuracy checks (the
        one output stands for the output after timing too); the memory probe, if any,
        watches that same call. Each measurement holds that one call as its one sample
        and round (``stopped`` is ``"single call"``)."""
        return self._releasing(lambda: self._once(variants))

    def _releasing(self, run: Callable[[], RunResult]) -> RunResult:
        """``run()``, then the event loop closed unless a variant awaits (always when the
        run raised: no later call will use it)."""
        try:
            result = run()
        except BaseException:
            self._release_loop(failed=True)
            raise
        self._release_loop()
        return result

    def _once(self, variants: Sequence[Variant]) -> RunResult:
        _unique(variants)
        self._callers = {}
        before = self._snapshot()
        start = self._clock()
        measurements: dict[str, Measurement] = {}
        for variant in variants:
            caller = Caller(variant.name, variant.fn, variant.setup, self._loop)
            self._callers[variant.name] = caller
            args = caller.args()
            captured: list[Any] = []
            took: list[float] = []

            def call(caller: Caller = caller, args: tuple[Any, ...] = args,
                     captured: list[Any] = captured, took: list[float] = took) -> None:
                took.append(self.timer.time_samples(
                    lambda: captured.append(caller.first(args)), 1, 1)[0] * 1000.0)

            peak = self._memory.measure(call) if self._memory is not None else None
            if not took:
                call()
            out = captured[0] if captured else None
            m = Measurement(name=variant.name, samples_ms=[took[0]], rounds_ms=[took[0]],
                            items=variant.items, first_call_ms=took[0],
                            prepare_s=variant.prepare_s, timer=self.timer.name,
                            extra=_extra(variant, caller), output=out, output_after=out,
                            peak_memory_mb=peak)
            if self._memory is not None:
                m.memory_kind = self._memory.kind
            measurements[variant.name] = m
        elapsed = self._clock() - start
        return RunResult(measurements, 1, elapsed, "single call",
                         noise.contention(before, self._snapshot()))

    def _release_loop(self, failed: bool = False) -> None:
        """Close the event loop now when the run failed or no variant of it awaits (the
        loop was only made current for first calls); otherwise it stays open for later
        calls until :meth:`close`."""
        if failed or not any(c.awaits for c in self._callers.values()):
            self._loop.close()

    def run(self, variants: Sequence[Variant], decided: Decided | None = None) -> RunResult:
        """Warm up and calibrate each variant, then measure them in interleaved rounds.

        After ``min_rounds``, and once every variant has ``MIN_CLEAN`` undisturbed
        rounds, ``decided`` is asked whether every verdict is clear; while it is not (or
        undisturbed rounds are missing), rounds are added (half again each time) until
        ``max_time_s``.
        """
        return self._releasing(lambda: self._rounds(variants, decided))

    def _rounds(self, variants: Sequence[Variant], decided: Decided | None) -> RunResult:
        _unique(variants)
        self._callers = {}
        plans = [self._warm_up(v) for v in variants]
        cfg = self.config
        rng = random.Random(cfg.seed)
        before = self._snapshot()
        start = self._clock()
        rounds, target, stopped = 0, cfg.min_rounds, "min rounds"
        cut_short = False
        while True:
            while rounds < target:
                order = list(plans)
                rng.shuffle(order)  # order varied so neither variant always follows the other
                for plan in order:
                    self._block(plan)
                rounds += 1
                if self._clock() - start >= cfg.max_time_s and rounds >= 3:
                    cut_short = rounds < target
                    break
            elapsed = self._clock() - start
            if self._clean_enough(plans):
                if decided is None:
                    stopped = "time limit" if cut_short else stopped
                    break
                if decided(self._measurements(plans)):
                    stopped = "decided"
                    break
            if elapsed >= cfg.max_time_s:
                stopped = "time limit"
                break
            if rounds >= cfg.max_rounds:
                stopped = "round limit"
                break
            target = min(cfg.max_rounds, rounds + max(2, rounds // 2))
        elapsed = self._clock() - start
        contention = noise.contention(before, self._snapshot())
        measurements = self._measurements(plans)
        for plan in plans:
            m = measurements[plan.variant.name]
            _note_first_call(plan, m)
            # again after timing (a fresh setup first): catches mutated inputs
            m.output_after = plan.caller.once()
            if self._memory is not None:
                m.peak_memory_mb = self._memory.measure(
                    plan.caller.prepared(plan.caller.args()))
                m.memory_kind = self._memory.kind
                details = getattr(self._memory, "details", None)
                if isinstance(details, Mapping) and details:
                    m.extra["memory_details"] = dict(details)
        return RunResult(measurements, rounds, elapsed, stopped, contention)

    def _warm_up(self, variant: Variant) -> _Plan:
        cfg = self.config
        caller = Caller(variant.name, variant.fn, variant.setup, self._loop)
        self._callers[variant.name] = caller
        captured: list[Any] = []
        args = caller.args()

        def first() -> None:
            captured.append(caller.first(args))

        first_s = self.timer.time_samples(first, 1, 1)[0]
        call = caller.prepared(())  # how later calls are made is known from the first
        calls, spent, recent = 1, first_s, []
        while calls < cfg.min_warmup_calls or spent * 1000.0 < cfg.warmup_ms:
            work = call if variant.setup is None else caller.prepared(caller.args())
            took = self.timer.time_samples(work, 1, 1)[0]
            recent.append(took)
            spent += took
            calls += 1
            if calls >= 10_000:
                break
        per_call_ms = max(stats.median(recent or [first_s]) * 1000.0, 1e-6)
        per_sample = max(1, math.ceil(cfg.min_sample_ms / per_call_ms))
        if variant.setup is not None:
            per_sample = 1  # a setup runs before every call, untimed: one call per sample
        if getattr(self.timer, "one_call_per_sample", False):
            per_sample = 1  # a cold cache (flushed before each sample) holds for one call only
        per_block = max(1, min(10_000, round(cfg.block_ms / (per_call_ms * per_sample))))
        plan = _Plan(variant, caller, call, per_sample, per_block,
                     settle=per_call_ms * 2 <= cfg.block_ms)
        plan.first_call_ms = first_s * 1000.0
        plan.warmup_calls = calls
        plan.output = captured[0] if captured else None
        return plan

    def _block(self, plan: _Plan) -> None:
        faults = self._faults()
        caller = plan.caller
        if plan.settle:
            # one untimed call: lets threads another runtime left spinning settle,
            # and brings this variant's data back into the caches
            caller.once()
        if plan.variant.setup is None:
            timed = time_flagged(self.timer, plan.call, plan.calls_per_sample,
                                 plan.samples_per_block)
        else:  # each sample one call, its setup before it, outside the timed region
            seconds: list[float] = []
            flags: list[bool] = []
            for _ in range(plan.samples_per_block):
                one = time_flagged(self.timer, caller.prepared(caller.args()), 1, 1)
                seconds += one.seconds
                flags += one.disturbed
            timed = Timed(seconds, flags)
        plan.faults += self._faults() - faults
        plan.calls += plan.calls_per_sample * plan.samples_per_block + int(plan.settle)
        per_call = [t * 1000.0 / plan.calls_per_sample for t in timed.seconds]
        flags = list(timed.disturbed)
        if len(flags) != len(per_call):
            raise ValueError(f"timer {self.timer.name!r} flagged {len(flags)} samples of "
                             f"{len(per_call)}")
        clean = [t for t, bad in zip(per_call, flags) if not bad]
        plan.samples.extend(per_call)
        plan.disturbed.extend(flags)
        plan.rounds.append(stats.median(clean or per_call))
        plan.rounds_disturbed.append(not clean)

    @staticmethod
    def _clean_enough(plans: Sequence[_Plan]) -> bool:
        """Every variant has ``MIN_CLEAN`` rounds with undisturbed samples."""
        return all(plan.rounds_disturbed.count(False) >= MIN_CLEAN for plan in plans)

    def _measurements(self, plans: Sequence[_Plan]) -> dict[str, Measurement]:
        out: dict[str, Measurement] = {}
        for plan in plans:
            v = plan.variant
            out[v.name] = Measurement(
                name=v.name,
                samples_ms=list(plan.samples),
                rounds_ms=list(plan.rounds),
                disturbed=list(plan.disturbed),
                rounds_disturbed=list(plan.rounds_disturbed),
                calls_per_sample=plan.calls_per_sample,
                items=v.items,
                warmup_calls=plan.warmup_calls,
                first_call_ms=plan.first_call_ms,
                prepare_s=v.prepare_s,
                minor_faults_per_call=plan.faults / plan.calls if plan.calls else None,
                timer=self.timer.name,
                extra=_extra(v, plan.caller),
                output=plan.output,
            )
        return out


def _unique(variants: Sequence[Variant]) -> None:
    if not variants:
        raise ValueError("nothing to measure: no variants")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")


def _extra(variant: Variant, caller: Caller) -> MeasurementExtra:
    """The variant's facts, with ``awaited`` and ``setup`` when they hold."""
    extra = variant.extra.copy()
    if caller.awaits:
        extra["awaited"] = True
    if variant.setup is not None:
        extra["setup"] = True
    return extra


def _note_first_call(plan: _Plan, m: Measurement) -> None:
    """``extra["first_call_note"]`` when the first call took far longer than the steady
    state (:data:`FIRST_CALL_FACTOR`, :data:`FIRST_CALL_MIN_MS`) and the variant has no
    setup (nor a preparation, whose first call is its cold start): a call may leave state
    the next one uses (an input sorted in place, a cache filled), so the steady state
    would time other work than the first call did. A note, not a verdict: warm-up
    effects (lazy initialisation, caches) are real too."""
    if plan.variant.setup is not None or plan.variant.prepare_s is not None \
            or not m.samples_ms:
        return
    steady = m.median_ms
    first = plan.first_call_ms
    if steady <= 0 or first < FIRST_CALL_FACTOR * steady or first - steady < FIRST_CALL_MIN_MS:
        return
    m.extra["first_call_note"] = (
        f"first call {first / steady:.0f}x the steady state ({first:.3g} ms vs a median of "
        f"{steady:.3g} ms): if a call changes state the next one uses (sorts its input in "
        "place, fills a cache), pass setup= to make fresh state before every call; warm-up "
        "effects are real too")
