"""Measure and compare without pytest: the engine and verdicts as plain functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_hwopt.core import stats
from pytest_hwopt.core.engine import Engine, EngineConfig, Fn, Variant
from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.specs import Spec
from pytest_hwopt.core.verdicts import Check, evaluate, undecided


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


def measure(fn: Fn, *, name: str = "fn", items: int = 1,
            config: EngineConfig | None = None, engine: Engine | None = None,
            device: str = "cpu") -> Measurement:
    """Warm up, calibrate and time ``fn()``; per-call statistics in the result.

    ``device="cuda"`` times GPU work with CUDA events (the host clock would only see
    the kernel launches).
    """
    runner = engine or _engine(config, device)
    return runner.run([Variant(name, fn, items)]).measurements[name]


def compare(a: Fn, b: Fn, *, min_speedup: float | None = None,
            names: tuple[str, str] = ("a", "b"), confidence: float = 0.95,
            config: EngineConfig | None = None, engine: Engine | None = None,
            device: str = "cpu") -> Comparison:
    """How many times faster ``b`` is than ``a``, measured interleaved in one run.

    With ``min_speedup`` the engine measures until the interval clears that budget
    (or time runs out) and ``check`` holds the verdict. ``device="cuda"`` times with
    CUDA events.
    """
    runner = engine or _engine(config, device)
    spec = Spec("speedup", {"min": min_speedup}, vs=names[0], of=names[1]) \
        if min_speedup is not None else None

    def decided(ms: Mapping[str, Measurement]) -> bool:
        assert spec is not None
        return not undecided(evaluate(spec, ms[names[1]], ms[names[0]], [], confidence))

    run = runner.run([Variant(names[0], a), Variant(names[1], b)],
                     decided if spec is not None else None)
    base, cand = run.measurements[names[0]], run.measurements[names[1]]
    ratio, low, high = stats.ratio_of_medians(base.rounds_ms, cand.rounds_ms, confidence)
    check = evaluate(spec, cand, base, [], confidence)[0] if spec is not None else None
    return Comparison(base, cand, ratio, low, high, confidence, check)
