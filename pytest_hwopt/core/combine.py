"""Combining per-process estimates: one figure with an interval across fresh processes.

A bias that lasts a whole process (where the allocator placed the buffers, the
address-space layout, which core the scheduler favoured, a neighbour that stayed busy
for the run) is invisible to an interval over rounds of that one process: every round
shares it. The remedy is pyperf's design (its ``Runner`` spawns worker processes and
the parent combines their values, https://pyperf.readthedocs.io/en/latest/runner.html):
measure again in fresh processes and treat each process's estimate as one observation.

The interval is a Student t interval over the per-process estimates, following
Kalibera and Jones, "Rigorous Benchmarking in Reasonable Time" (ISMM 2013): in an
experiment with repetitions at several levels (process executions, then iterations
within one), the interval is computed from the means at the highest level with
``n - 1`` degrees of freedom, because the variance between executions contains the
variance within them. Estimates are combined on the log scale (a geometric mean, as for
ratios in Fleming and Wallace, "How not to lie with statistics: the correct way to
summarize benchmark results", CACM 1986): a speedup of 2x and one of 0.5x are equally
far from 1x, and times, rates and ratios are positive and skewed. A bootstrap over
processes is not used: with 3-6 processes it has only a handful of distinct resamples
and its percentile interval is too narrow (it scales the spread by ``sqrt((n-1)/n)``
and ignores the t distribution's heavier tails).

Pure: no pytest, no torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pytest_hwopt.core import kinds
from pytest_hwopt.core.checks import INCONCLUSIVE, Check

METHOD: Final = ("geometric mean of per-process estimates, Student t interval on their "
                 "logarithms (Kalibera & Jones 2013)")


@dataclass(frozen=True)
class Combined:
    """Per-process estimates combined: ``estimate`` (their geometric mean) and the
    interval ``low``-``high`` at the confidence it was made for, in the estimates' unit."""

    estimate: float
    low: float
    high: float
    values: tuple[float, ...]

    @property
    def count(self) -> int:
        """How many processes' estimates were combined."""
        return len(self.values)


@dataclass(frozen=True)
class Reading:
    """What one worker process gave for one check: its estimate (in the check's unit),
    or ``None`` and ``error`` saying why there is none (a crash, a time-out, no JSON,
    the check missing from its results)."""

    value: float | None
    error: str = ""
    seed: int | None = None
    seconds: float | None = None


def t_two_sided(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` (>= 1) degrees of freedom.

    Exact finite series for whole ``df``: Abramowitz and Stegun, Handbook of Mathematical
    Functions, 26.7.3 (odd ``df``) and 26.7.4 (even ``df``), with ``theta = atan(t/sqrt(df))``.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    total = term = 1.0
    if df % 2:
        if df == 1:
            return 2.0 * theta / math.pi
        for k in range(1, (df - 3) // 2 + 1):
            term *= 2.0 * k / (2.0 * k + 1.0) * cos2
            total += term
        return 2.0 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    for k in range(1, (df - 2) // 2 + 1):
        term *= (2.0 * k - 1.0) / (2.0 * k) * cos2
        total += term
    return math.sin(theta) * total


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student t quantile: ``t`` with ``P(|T| <= t) = confidence``
    (0.95 with 3 degrees of freedom -> 3.182). Bisection on :func:`t_two_sided`,
    to a relative precision of 1e-10. ValueError for a confidence outside (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    low, high = 0.0, 1.0
    while t_two_sided(high, df) < confidence:
        low, high = high, high * 2.0
    while high - low > 1e-10 * high:
        mid = (low + high) / 2.0
        if t_two_sided(mid, df) < confidence:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def combine(values: Sequence[float], confidence: float = 0.95) -> Combined:
    """Per-process estimates (positive, in one unit; at least two) -> :class:`Combined`.

    ``exp(m ± t * s / sqrt(n))`` where ``m`` and ``s`` are the mean and sample standard
    deviation of the estimates' logarithms and ``t`` is :func:`t_quantile` with ``n - 1``
    degrees of freedom. ValueError for fewer than two estimates or one that is not a
    positive finite number.
    """
    if len(values) < 2:
        raise ValueError(f"an interval across processes needs at least 2 estimates, "
                         f"got {len(values)}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"estimates must be positive finite numbers, got {list(values)}")
    logs = [math.log(v) for v in values]
    n = len(logs)
    mean = math.fsum(logs) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (n - 1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return Combined(estimate=math.exp(mean), low=math.exp(mean - half),
                    high=math.exp(mean + half), values=tuple(values))


def combined_check(check: Check, readings: Sequence[Reading], confidence: float = 0.95
                   ) -> Check:
    """``check`` judged again on its own estimate and the worker processes' ``readings``.

    The in-run estimate (``check.measured``) is the first process; every reading with a
    value is another. With at least two estimates the check's ``measured``, ``low``,
    ``high``, ``status``, ``point_passed`` and message come from :func:`combine` and
    :func:`pytest_hwopt.core.kinds.decide`; with fewer (every worker failed) the
    verdict stays as it was. A combined verdict that still straddles the budget is
    inconclusive with that ``reason``. Either way ``detail["processes"]`` records the workers,
    their estimates and their failures, and the in-run verdict that was replaced.
    A check without a budget, an estimate or a registered kind is returned unchanged.
    """
    kind = kinds.find(check.kind)
    if check.budget is None or check.measured is None or kind is None:
        return check
    failures = [f"worker {n}: {r.error}" for n, r in enumerate(readings, 1) if r.value is None]
    values = [check.measured] + [r.value for r in readings if r.value is not None]
    record: dict[str, Any] = {
        "workers": len(readings), "count": len(values), "values": values,
        "seeds": [r.seed for r in readings],
        "seconds": [r.seconds for r in readings], "failures": failures,
        "method": METHOD, "confidence": confidence,
        "in_run": {"measured": check.measured, "low": check.low, "high": check.high,
                   "status": check.status.value}}
    detail = {**check.detail, "processes": record}
    if len(values) < 2:
        note = f" -- repeating it in {len(readings)} fresh process(es) failed: " + "; ".join(
            failures)
        return dataclasses.replace(check, detail=detail, message=check.message + note)
    try:
        combined = combine(values, confidence)
    except ValueError as exc:  # an estimate of zero or less: nothing to take a log of
        record["failures"] = failures + [str(exc)]
        return dataclasses.replace(check, detail=detail,
                                   message=check.message + f" -- not combined: {exc}")
    status, point = kinds.decide(combined.estimate, combined.low, combined.high, check.budget,
                                 higher_is_better=kind.higher_is_better)
    fmt = kind.value_format
    rel = kind.comparison if point else {">=": "<", "<=": ">"}[kind.comparison]
    subject = kind.subject_of(check.variant, check.vs, check.metric)
    across = f"{combined.count} processes"
    message = (f"{subject}: {kind.with_unit(format(combined.estimate, fmt))} "
               f"({confidence:.0%} CI {format(combined.low, fmt)}-{format(combined.high, fmt)} "
               f"across {across}) {rel} {kind.with_unit(kinds.budget_number(check.budget))}")
    if failures:
        message += f" ({len(failures)} of {len(readings)} worker processes failed)"
    reason = ""
    if status is INCONCLUSIVE:
        reason = f"the interval across {across} straddles the budget"
        message += f" (inconclusive: {reason})"
    return dataclasses.replace(check, measured=combined.estimate, low=combined.low,
                               high=combined.high, status=status, point_passed=point,
                               message=message, detail=detail, reason=reason)
