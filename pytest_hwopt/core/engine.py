"""The measurement engine: warm-up, calibration, interleaved rounds, adaptive stopping.

Free of pytest and torch: it gets its timer, clock and probes passed in, so a
fake timer drives it deterministically in tests.

Every sample is kept with its flag (disturbed: the process was kept from a CPU, as the
timer tells, :func:`~pytest_hwopt.core.timing.time_flagged`); a round's value is the
median of its block's undisturbed samples, and rounds are added while a variant has
fewer than :data:`~pytest_hwopt.core.measurement.MIN_CLEAN` undisturbed rounds.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_hwopt.core import contention as noise
from pytest_hwopt.core import stats
from pytest_hwopt.core.measurement import MIN_CLEAN, Measurement, MeasurementExtra
from pytest_hwopt.core.timing import HostTimer, Timer, time_flagged

#: what a variant runs: a callable without arguments whose return value is its output (any
#: value: an array, a tensor, nested containers of them)
Fn = Callable[[], Any]
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


@dataclass
class Variant:
    """A callable to measure; its return value is its output (any value)."""

    name: str
    fn: Fn
    items: int = 1
    prepare_s: float | None = None
    extra: MeasurementExtra = field(default_factory=lambda: MeasurementExtra())


@dataclass
class RunResult:
    """Measurements of all variants of one run, and the conditions they were taken in."""

    measurements: dict[str, Measurement]
    rounds: int
    elapsed_s: float
    stopped: str  # "decided", "time limit", "round limit" or "min rounds"
    contention: noise.Contention


@dataclass
class _Plan:
    variant: Variant
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

    def run(self, variants: Sequence[Variant], decided: Decided | None = None) -> RunResult:
        """Warm up and calibrate each variant, then measure them in interleaved rounds.

        After ``min_rounds``, and once every variant has ``MIN_CLEAN`` undisturbed
        rounds, ``decided`` is asked whether every verdict is clear; while it is not (or
        undisturbed rounds are missing), rounds are added (half again each time) until
        ``max_time_s``.
        """
        if not variants:
            raise ValueError("nothing to measure: no variants")
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
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
            m.output_after = plan.variant.fn()  # again after timing: catches mutated inputs
            if self._memory is not None:
                m.peak_memory_mb = self._memory.measure(plan.variant.fn)
                m.memory_kind = self._memory.kind
                details = getattr(self._memory, "details", None)
                if isinstance(details, Mapping) and details:
                    m.extra["memory_details"] = dict(details)
        return RunResult(measurements, rounds, elapsed, stopped, contention)

    def _warm_up(self, variant: Variant) -> _Plan:
        cfg = self.config
        captured: list[Any] = []

        def first() -> None:
            captured.append(variant.fn())

        first_s = self.timer.time_samples(first, 1, 1)[0]
        calls, spent, recent = 1, first_s, []
        while calls < cfg.min_warmup_calls or spent * 1000.0 < cfg.warmup_ms:
            took = self.timer.time_samples(variant.fn, 1, 1)[0]
            recent.append(took)
            spent += took
            calls += 1
            if calls >= 10_000:
                break
        per_call_ms = max(stats.median(recent or [first_s]) * 1000.0, 1e-6)
        per_sample = max(1, math.ceil(cfg.min_sample_ms / per_call_ms))
        if getattr(self.timer, "one_call_per_sample", False):
            per_sample = 1  # a cold cache (flushed before each sample) holds for one call only
        per_block = max(1, min(10_000, round(cfg.block_ms / (per_call_ms * per_sample))))
        plan = _Plan(variant, per_sample, per_block,
                     settle=per_call_ms * 2 <= cfg.block_ms)
        plan.first_call_ms = first_s * 1000.0
        plan.warmup_calls = calls
        plan.output = captured[0] if captured else None
        return plan

    def _block(self, plan: _Plan) -> None:
        faults = self._faults()
        if plan.settle:
            # one untimed call: lets threads another runtime left spinning settle,
            # and brings this variant's data back into the caches
            plan.variant.fn()
        timed = time_flagged(self.timer, plan.variant.fn, plan.calls_per_sample,
                             plan.samples_per_block)
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
                extra=v.extra.copy(),
                output=plan.output,
            )
        return out
