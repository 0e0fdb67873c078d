"""Measure and compare without pytest: the engine and verdicts as plain functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from pytest_hwopt.core import stats
from pytest_hwopt.core.calls import check_callable
from pytest_hwopt.core.engine import Decided, Engine, EngineConfig, Fn, RunResult, Setup, Variant
from pytest_hwopt.core.measurement import Measurement, MeasurementExtra, clean_round_pairs
from pytest_hwopt.core.specs import Spec
from pytest_hwopt.core.verdicts import Check, evaluate, undecided
from pytest_hwopt.hardware.threads import IdleSampler, limited


@dataclass(frozen=True)
class Comparison:
    """Speedup of ``candidate`` over ``baseline`` (ratio of medians) with its interval."""

    baseline: Measurement
    candidate: Measurement
    speedup: float
    low: float
    high: float
    confidence: float
    check: Check | None = None

    def __str__(self) -> str:
        return (f"{self.candidate.name} vs {self.baseline.name}: {self.speedup:.2f}x "
                f"({self.confidence:.0%} CI {self.low:.2f}-{self.high:.2f})")


def _engine(config: EngineConfig | None, device: str) -> Engine:
    """An engine timing on ``device``: the host clock on a CPU, CUDA events on a GPU."""
    if device == "cpu":
        return Engine(config)
    from pytest_hwopt.hardware.devices import resolve

    dev = resolve(device)
    return Engine(config, timer=dev.timer(), memory=dev.memory())


def _run(runner: Engine, variants: list[Variant], decided: Decided | None,
         threads: int | None) -> RunResult:
    """``runner.run`` with every thread pool at ``threads`` (default: the cores idle now),
    as the plugin runs its variants; each result records the count (``extra["threads"]``,
    ``"threads_source"``, ``"thread_pools"``)."""
    for v in variants:
        check_callable(v.name, v.fn, "measure")
    choice = IdleSampler(threads).choice()
    try:
        with limited(choice.count) as pools:
            run = runner.run(variants, decided)
    finally:
        runner.close()  # the event loop awaitable variants ran on
    for m in run.measurements.values():
        # keys MeasurementExtra does not list, as in the plugin's results
        m.extra.update(cast(MeasurementExtra, {"threads": choice.count,
                                               "threads_source": choice.source,
                                               "thread_pools": pools}))
    return run


def measure(fn: Fn, *, name: str = "fn", setup: Setup | None = None, items: int = 1,
            config: EngineConfig | None = None, engine: Engine | None = None,
            device: str = "cpu", threads: int | None = None) -> Measurement:
    """Warm up, calibrate and time ``fn()``; per-call statistics in the result.

    ``setup`` runs before every call, untimed; a value it returns other than None is
    passed to ``fn`` as its one argument. An awaitable ``fn`` returns is awaited inside the
    timed call on an event loop made for this run; a generator or other lazy iterator is
    refused (``TypeError`` naming the fix).

    ``device="cuda"`` times GPU work with CUDA events (the host clock would only see
    the kernel launches). ``threads`` is the count of every thread pool ``fn`` may touch
    (PyTorch's if loaded, BLAS and OpenMP through threadpoolctl) during the run; default:
    the cores idle now (measured over 0.1 s), at most those this process may use.
    Raises ``ValueError`` for ``threads`` below 1.
    """
    runner = engine or _engine(config, device)
    return _run(runner, [Variant(name, fn, items, setup=setup)], None,
                threads).measurements[name]


def compare(a: Fn, b: Fn, *, min_speedup: float | None = None,
            names: tuple[str, str] = ("a", "b"), setup: Setup | None = None,
            confidence: float = 0.95,
            config: EngineConfig | None = None, engine: Engine | None = None,
            device: str = "cpu", threads: int | None = None) -> Comparison:
    """How many times faster ``b`` is than ``a``, measured interleaved in one run.

    With ``min_speedup`` the engine measures until the interval clears that budget
    (or time runs out) and ``check`` holds the verdict. ``device="cuda"`` times with
    CUDA events. Both run with the same ``threads`` in every pool, and ``setup`` (if
    given) runs before every call of either (see :func:`measure`).
    """
    runner = engine or _engine(config, device)
    spec = Spec("speedup", {"min": min_speedup}, vs=names[0], of=names[1]) \
        if min_speedup is not None else None

    def decided(ms: Mapping[str, Measurement]) -> bool:
        assert spec is not None
        return not undecided(evaluate(spec, ms[names[1]], ms[names[0]], [], confidence))

    run = _run(runner, [Variant(names[0], a, setup=setup), Variant(names[1], b, setup=setup)],
               decided if spec is not None else None, threads)
    base, cand = run.measurements[names[0]], run.measurements[names[1]]
    # rounds undisturbed on both sides (all rounds when none is: a busy machine, and the
    # check, if any, says so)
    base_rounds, cand_rounds = clean_round_pairs(base, cand)
    if not base_rounds:
        base_rounds, cand_rounds = base.rounds_ms, cand.rounds_ms
    ratio, low, high = stats.ratio_of_medians(base_rounds, cand_rounds, confidence)
    check = evaluate(spec, cand, base, [], confidence)[0] if spec is not None else None
    return Comparison(base, cand, ratio, low, high, confidence, check)
