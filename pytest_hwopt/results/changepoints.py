"""Change points in a series of runs, and whether a new run departs from its history.

No pytest, no torch. A series is one variant's per-run median time (or its within-run
ratio to a reference variant) on one machine fingerprint, oldest first; everything here
works on the logarithms of those values, so a step is a factor and a spread is relative.

**Change points** (:func:`detect`), in two stages, the shape of Apache Otava's method
(E-Divisive means: candidate change points, then a significance test that drops the weak
ones and tests again):

1. *Candidates*: ``ruptures``' PELT search (Killick, Fearnhead and Eckley, "Optimal detection
   of changepoints with a linear computational cost", JASA 2012) with the least-squares cost
   ``l2`` (a change in the mean of the log values), segments of one run allowed (a step at the
   newest run must show at once), and the penalty ``PENALTY * sigma^2 * ln(n)`` per change
   point: the BIC's ``ln(n)`` per parameter, ``sigma`` the noise read from the differences of
   successive runs (their median absolute deviation x 1.4826 / sqrt(2), robust to the steps
   themselves; at least :data:`SPREAD_FLOOR`). ``ruptures`` (with NumPy and SciPy) is the
   optional extra ``history``: ``pip install 'pytest-hwopt[history]'``.
2. *Significance*: each candidate's step is tested with Student's two-sample t-test on the
   log values of the segments either side (pooled variance; a one-run segment borrows the
   other side's spread; at least the series' noise ``sigma``, so two runs that happen to
   agree closely do not make a step between short segments look certain). A candidate with
   ``p >= alpha`` (:data:`ALPHA`) or a step under :data:`MIN_STEP` is dropped, the smallest
   step first (a p-value of short segments says little: two one-run segments side by side
   have no degree of freedom), and the rest are tested again with the merged segments,
   until every remaining one holds.

**A new run against its history** (:func:`judge`): the history is the runs since the last
change point; the new value's ratio to their geometric mean is a regression when it is
beyond the one-sided ``1 - alpha`` prediction limit of a normal sample of the log values,
``exp(t(n-1) * sqrt(s^2 * (1 + 1/n) + u^2))`` (Student t with ``n - 1`` degrees of freedom;
the threshold Bencher's t-test uses), and at least ``1 + MIN_STEP``. ``u`` is the new
value's own standard error (log scale, :func:`log_se` of its run's rounds): a run measured
on a busier day scatters more than the runs of its history did. Fewer than
:data:`MIN_RUNS` runs decide nothing.

Parameters, weighed: ``ALPHA`` 0.01 keeps false alarms near 1 in 100 per series tested (a
suite of 50 variants may see one in two runs of a noisy history, which the ``MIN_STEP``
floor mostly removes); ``MIN_STEP`` 5% is below the 20% a change must show and above the
1-3% medians move between quiet runs; ``PENALTY`` 2 (twice BIC's) keeps PELT from cutting
at every burst; ``MIN_RUNS`` 3 is the fewest runs that give a spread with two degrees of
freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Final

from pytest_hwopt.core.combine import t_quantile, t_two_sided
from pytest_hwopt.core.stats import median

ALPHA: Final = 0.01
MIN_STEP: Final = 0.05
PENALTY: Final = 2.0
MIN_RUNS: Final = 3
#: the smallest run-to-run spread (standard deviation of log values) assumed: 0.5%
SPREAD_FLOOR: Final = 0.005

INSTALL_HINT: Final = "pip install 'pytest-hwopt[history]'"


class MissingLibrary(RuntimeError):
    """Change-point detection needs ``ruptures``; the message says how to install it."""


@dataclass(frozen=True)
class ChangePoint:
    """A significant step in a series: ``index`` is the first value after it."""

    index: int
    before: float  # geometric mean of the segment before
    after: float  # of the segment after
    p: float  # two-sided t-test of the two segments' log values

    @property
    def step(self) -> float:
        """``after / before - 1``: +0.25 for 25% slower (a time series)."""
        return self.after / self.before - 1.0


def ruptures_available() -> bool:
    try:
        import_module("ruptures")
    except ImportError:
        return False
    return True


def _logs(values: Sequence[float]) -> list[float]:
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ValueError("a series holds positive, finite values only")
    return [math.log(v) for v in values]


def noise(logs: Sequence[float]) -> float:
    """The run-to-run noise of log values: MAD of successive differences x 1.4826 / sqrt(2),
    at least :data:`SPREAD_FLOOR`."""
    diffs = [b - a for a, b in zip(logs, logs[1:])]
    if not diffs:
        return SPREAD_FLOOR
    centre = median(diffs)
    mad = median([abs(d - centre) for d in diffs])
    return max(mad * 1.4826 / math.sqrt(2.0), SPREAD_FLOOR)


def candidates(logs: Sequence[float], penalty: float = PENALTY) -> list[int]:
    """PELT's change points of log values (indices of the first value after each)."""
    n = len(logs)
    if n < 2:
        return []
    try:
        rpt: Any = import_module("ruptures")
        np: Any = import_module("numpy")
    except ImportError as exc:
        raise MissingLibrary(f"change-point detection needs ruptures ({exc}): "
                             f"{INSTALL_HINT}") from None
    sigma = noise(logs)
    algo = rpt.Pelt(model="l2", min_size=1, jump=1).fit(np.asarray(logs).reshape(-1, 1))
    ends = algo.predict(pen=penalty * sigma * sigma * math.log(n))
    return [int(i) for i in ends if 0 < int(i) < n]


def step_p(before: Sequence[float], after: Sequence[float],
           floor: float = SPREAD_FLOOR) -> float:
    """Two-sided p of Student's pooled two-sample t-test on log values; 1.0 without a degree
    of freedom (two single runs). The pooled deviation is at least ``floor``."""
    na, nb = len(before), len(after)
    df = na + nb - 2
    if na == 0 or nb == 0 or df < 1:
        return 1.0
    ma, mb = sum(before) / na, sum(after) / nb
    ss = sum((x - ma) ** 2 for x in before) + sum((x - mb) ** 2 for x in after)
    s = max(math.sqrt(ss / df), floor)
    t = abs(mb - ma) / (s * math.sqrt(1.0 / na + 1.0 / nb))
    return max(0.0, 1.0 - t_two_sided(t, df))


def detect(values: Sequence[float], *, alpha: float = ALPHA, min_step: float = MIN_STEP,
           penalty: float = PENALTY) -> list[ChangePoint]:
    """The significant change points of a series of positive values (see the module
    docstring), oldest first. ValueError for a value that is not positive and finite;
    :class:`MissingLibrary` without ruptures (not needed below 3 values)."""
    logs = _logs(values)
    if len(logs) < 3:
        return []
    cuts = candidates(logs, penalty)
    floor = noise(logs)
    while True:
        found = _tested(logs, cuts, floor)
        # the smallest step goes first, whatever its p: a step is what a change is, while
        # the p of short segments says little (a one-run segment beside another has no
        # degree of freedom, p = 1: dropping by p would drop a real step at the newest run
        # beside a one-run blip before it)
        weak = [(abs(math.log(cp.after / cp.before)), k) for k, cp in enumerate(found)
                if cp.p >= alpha or abs(math.log(cp.after / cp.before)) < math.log1p(min_step)]
        if not weak:
            return found
        cuts.pop(min(weak)[1])


def _tested(logs: Sequence[float], cuts: Sequence[int], floor: float) -> list[ChangePoint]:
    edges = [0, *cuts, len(logs)]
    out = []
    for k in range(1, len(edges) - 1):
        before, after = logs[edges[k - 1]:edges[k]], logs[edges[k]:edges[k + 1]]
        out.append(ChangePoint(edges[k], math.exp(sum(before) / len(before)),
                               math.exp(sum(after) / len(after)),
                               step_p(before, after, floor)))
    return out


def holm(p_values: Sequence[float], alpha: float = ALPHA, tests: int | None = None
         ) -> list[bool]:
    """Which of ``p_values`` are significant at family-wise error rate ``alpha`` over
    ``tests`` tests (at least ``len(p_values)``; the tests not given were not candidates),
    by Holm's step-down rule (S. Holm, "A simple sequentially rejective multiple test
    procedure", Scand. J. Statist. 1979): the k-th smallest p (k from 0) must be at most
    ``alpha / (tests - k)``, and every smaller one significant too."""
    m = max(tests or 0, len(p_values))
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out = [False] * len(p_values)
    for k, i in enumerate(order):
        if p_values[i] > alpha / (m - k):
            break
        out[i] = True
    return out


def newest_segment(values: Sequence[float], points: Sequence[ChangePoint]) -> list[float]:
    """The values since the last change point (all of them without one)."""
    start = points[-1].index if points else 0
    return list(values[start:])


@dataclass(frozen=True)
class Judgement:
    """A new value against the runs before it (:func:`judge`)."""

    runs: int  # runs of the history it was judged against
    typical: float  # their geometric mean
    spread: float  # standard deviation of their log values (at least SPREAD_FLOOR)
    limit: float  # ratio beyond which the new value is a change (> 1)
    ratio: float  # new / typical
    p: float  # one-sided: of a value at least this far out in its direction

    @property
    def slower(self) -> bool:
        return self.ratio > self.limit

    @property
    def faster(self) -> bool:
        return self.ratio < 1.0 / self.limit


def log_se(rounds: Sequence[float]) -> float:
    """Standard error of the median of a run's per-round values, on the log scale:
    ``sqrt(pi/2) * sd(log values) / sqrt(k)`` (the median's asymptotic efficiency against
    the mean under normality); 0.0 with fewer than 2 positive values."""
    logs = [math.log(v) for v in rounds if v > 0 and math.isfinite(v)]
    k = len(logs)
    if k < 2:
        return 0.0
    m = sum(logs) / k
    sd = math.sqrt(sum((x - m) ** 2 for x in logs) / (k - 1))
    return math.sqrt(math.pi / 2.0) * sd / math.sqrt(k)


def judge(history: Sequence[float], value: float, *, alpha: float = ALPHA,
          min_step: float = MIN_STEP, value_se: float = 0.0) -> Judgement | None:
    """``value`` against ``history`` (oldest first); None with fewer than :data:`MIN_RUNS`
    runs. ``value_se``: the value's own standard error on the log scale (:func:`log_se`).
    See the module docstring for the limit."""
    if len(history) < MIN_RUNS:
        return None
    logs = _logs(history)
    (x,) = _logs([value])
    n = len(logs)
    m = sum(logs) / n
    s = max(math.sqrt(sum((v - m) ** 2 for v in logs) / (n - 1)), SPREAD_FLOOR)
    scale = math.sqrt(s * s * (1.0 + 1.0 / n) + value_se * value_se)
    limit = max(math.exp(t_quantile(1.0 - 2.0 * alpha, n - 1) * scale), 1.0 + min_step)
    t = abs(x - m) / scale
    p = max(0.0, (1.0 - t_two_sided(t, n - 1)) / 2.0)
    return Judgement(n, math.exp(m), s, limit, math.exp(x - m), p)
