"""Series of a history store: per machine fingerprint, test and variant, and the verdicts on
them (``pytest-hwopt history`` and ``--hwopt-compare=history``).

No pytest, no torch. Two series per variant and machine: its per-run median time (ms), and,
where the variant has a reference inside its runs (a speedup check's other side, a model
candidate's eager run; :func:`pytest_hwopt.results.history.pair_references`), its within-run
ratio to the reference, which a machine that is slower today for every variant leaves
unchanged: the median of the per-round ratios where the run kept its rounds
(:func:`pytest_hwopt.results.history.paired_ratio`), else ``median / reference median``.
Where a variant has both, its ratio decides whether it changed, unless its reference's own
time explains the change (:meth:`Verdict.regressed`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from pytest_hwopt.results import changepoints
from pytest_hwopt.results.changepoints import ChangePoint, Judgement
from pytest_hwopt.results.history import (
    Point,
    RunInfo,
    clean_rounds,
    machine_label,
    paired_ratio,
)
from pytest_hwopt.results.terminal import table

Kind = Literal["time", "ratio"]
TIME: Final = "time"
RATIO: Final = "ratio"


@dataclass(frozen=True)
class Series:
    """One variant's values on one machine, oldest run first: times (ms) or ratios (x)."""

    fingerprint: str
    test: str
    variant: str
    kind: Kind
    reference: str | None
    runs: tuple[RunInfo, ...]
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        """The variant, or ``fast / slow`` for a ratio series."""
        return f"{self.variant} / {self.reference}" if self.kind == RATIO else self.variant


def build(points: Iterable[Point]) -> list[Series]:
    """The time and ratio series of stored results, in the order their variants first
    appear. A ratio needs the reference measured in the same run."""
    by_run: dict[tuple[int, str], dict[str, Point]] = {}
    order: list[tuple[str, str, str]] = []
    grouped: dict[tuple[str, str, str], list[Point]] = {}
    for p in points:
        key = (p.run.fingerprint, p.test, p.variant)
        if key not in grouped:
            order.append(key)
            grouped[key] = []
        grouped[key].append(p)
        by_run.setdefault((p.run.id, p.test), {})[p.variant] = p
    out: list[Series] = []
    for key in order:
        pts = grouped[key]
        fid, test, variant = key
        out.append(Series(fid, test, variant, TIME, None, tuple(p.run for p in pts),
                          tuple(p.median_ms for p in pts)))
        reference = next((p.reference for p in reversed(pts) if p.reference), None)
        if reference is None:
            continue
        runs, ratios = [], []
        for p in pts:
            ref = by_run[(p.run.id, test)].get(reference)
            if ref is not None and p.reference == reference:
                runs.append(p.run)
                ratios.append(within_run_ratio(p, ref)[0])
        if ratios:
            out.append(Series(fid, test, variant, RATIO, reference, tuple(runs),
                              tuple(ratios)))
    return out


def within_run_ratio(point: Point, reference: Point) -> tuple[float, float | None]:
    """``(ratio, its log-scale standard error)`` of ``point`` to ``reference`` of the same
    run: round by round where both kept their rounds
    (:func:`~pytest_hwopt.results.history.paired_ratio`), else the ratio of their medians
    (error None: unknown)."""
    paired = paired_ratio(point.rounds_ms, reference.rounds_ms, point.rounds_disturbed,
                          reference.rounds_disturbed)
    if paired is not None:
        return paired
    return point.median_ms / reference.median_ms, None


@dataclass(frozen=True)
class Analysed:
    """A series with its significant change points."""

    series: Series
    changes: list[ChangePoint] = field(default_factory=list)

    @property
    def newest_slowdown(self) -> ChangePoint | None:
        """The last change point when the newest segment is slower than the one before."""
        if self.changes and self.changes[-1].step > 0:
            return self.changes[-1]
        return None


def analyse(series: Iterable[Series], *, alpha: float = changepoints.ALPHA,
            min_step: float = changepoints.MIN_STEP) -> list[Analysed]:
    """Each series with :func:`changepoints.detect`'s change points."""
    return [Analysed(s, changepoints.detect(s.values, alpha=alpha, min_step=min_step))
            for s in series]


def slowdowns(analysed: Sequence[Analysed], min_step: float = changepoints.MIN_STEP,
              alpha: float = changepoints.ALPHA) -> list[Analysed]:
    """Variants whose newest segment is a significant slowdown, by the rule of
    :attr:`Verdict.regressed`: where the variant has a ratio series, that series' newest
    segment is a significant slowdown (the ratio series is returned) unless the
    reference explains it: the reference's times across that change moved beyond their
    prediction limit the other way, and the variant's did not move beyond theirs or moved
    less; else
    the time series' newest segment is a significant slowdown.

    Asking this of every variant at once is one test per variant: the slowdowns kept are
    those significant at family-wise error rate ``alpha`` over all variants
    (:func:`changepoints.holm`), so a store of a hundred series does not raise about one
    false alarm per check, as ``alpha`` per series would (each series' change points are
    still found at ``alpha``)."""
    found = _slowdown_candidates(analysed, min_step)
    tested = sum(1 for a in analysed if a.series.kind == TIME)
    keep = changepoints.holm([a.newest_slowdown.p for a in found  # type: ignore[union-attr]
                              ], alpha, tested)
    return [a for a, kept in zip(found, keep) if kept]


def _slowdown_candidates(analysed: Sequence[Analysed], min_step: float) -> list[Analysed]:
    ratio = {(a.series.fingerprint, a.series.test, a.series.variant): a
             for a in analysed if a.series.kind == RATIO}
    times_of = {(a.series.fingerprint, a.series.test, a.series.variant): a.series
                for a in analysed if a.series.kind == TIME}
    out = []
    for a in analysed:
        s = a.series
        if s.kind != TIME:
            continue
        other = ratio.get((s.fingerprint, s.test, s.variant))
        if other is None:
            if a.newest_slowdown is not None:
                out.append(a)
            continue
        cp = other.newest_slowdown
        if cp is None:
            continue
        start = other.changes[-2].index if len(other.changes) > 1 else 0
        own = _move(s, other, start, cp.index, min_step)
        ref = _move(times_of.get((s.fingerprint, s.test, other.series.reference or "")),
                    other, start, cp.index, min_step)
        if not _reference_explains(own, ref, slower=True):  # Verdict.regressed's rule
            out.append(other)
    return out


def _move(times: Series | None, ratio: Analysed, start: int, cut: int, min_step: float
          ) -> Judgement | None:
    """The geometric mean of ``times`` over the runs of ``ratio``'s segment from ``cut`` on,
    judged against their values over its segment from ``start`` to ``cut``
    (:func:`changepoints.judge`); None where either is empty or too short."""
    if times is None:
        return None
    by_run = dict(zip((r.id for r in times.runs), times.values))
    before = [by_run[r.id] for r in ratio.series.runs[start:cut] if r.id in by_run]
    after = [by_run[r.id] for r in ratio.series.runs[cut:] if r.id in by_run]
    if not before or not after:
        return None
    return changepoints.judge(before, _geomean(after), min_step=min_step)


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


# ---- one run against the store -------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """One variant of this run against its history on this machine."""

    test: str
    variant: str
    time: Judgement | None  # None: too few runs
    ratio: Judgement | None  # None: no reference, or too few runs with it
    reference: str | None
    since: RunInfo | None  # the run that opened the newest segment (after a change point)
    history_runs: int = 0  # runs of this machine it could be judged against
    min_step: float = changepoints.MIN_STEP
    #: the reference's time now / its history's geometric mean (None without one)
    reference_move: float | None = None
    #: the reference's time judged against its own history (None without one, or too few
    #: runs): whether the reference itself moved beyond what this machine's runs scatter
    reference_time: Judgement | None = None
    #: for a variant judged on its time alone (no reference of its own: a test's reference
    #: itself), the geometric mean of the same ratio over the test's other judged variants
    #: (None without any): a machine slower today for every variant moves them all
    siblings_move: float | None = None
    #: who ``siblings_move`` was read from: the test's other variants, or for a test with
    #: one judged variant the variants judged just before it in this run (:func:`with_neighbours`)
    siblings: str = "the test's other variants"

    def _reference_explains(self, *, slower: bool) -> bool:
        """The change of the within-run ratio is the reference's: its own time moved beyond
        its history's limit the other way (faster, for this variant's ratio to rise), and
        this variant's time stayed within its own limit or moved less than the reference's.
        Where the machine's speed scatters from run to run as much as the step (a cloud
        host's runs can differ 35%), the reference's time is not beyond its limit, and the
        ratio, which cancels the machine, decides."""
        return _reference_explains(self.time, self.reference_time, slower=slower)

    def _beyond_siblings(self, *, slower: bool) -> bool:
        """A time-only verdict holds when the variant also moved beyond the limit against
        the test's other variants in this run (their ``siblings_move``): the within-run
        comparison that cancels a machine slower today, for a variant with no reference."""
        assert self.time is not None
        if self.siblings_move is None:
            return True
        relative = self.time.ratio / self.siblings_move
        return relative > self.time.limit if slower else relative < 1.0 / self.time.limit

    @property
    def judged(self) -> bool:
        """Judged on its time, or on its within-run ratio alone: a machine whose speed
        jumps opens a new segment in a variant's times (a change point) and leaves too few
        runs since, while the ratio's series runs on unbroken."""
        return self.time is not None or self.ratio is not None

    @property
    def regressed(self) -> bool:
        """Where the within-run ratio is judged: that ratio beyond its history's limit,
        unless the reference explains it (its own time significantly faster than its
        history while this variant's is not significantly slower); the ratio decides
        because it cancels the machine's speed, which times across runs do not. Without a
        judged ratio: the time beyond its history's limit (and beyond the test's other
        variants, where it has some)."""
        if self.ratio is not None:
            return self.ratio.slower and not self._reference_explains(slower=True)
        return (self.time is not None and self.time.slower
                and self._beyond_siblings(slower=True))

    @property
    def improved(self) -> bool:
        if self.ratio is not None:
            return self.ratio.faster and not self._reference_explains(slower=False)
        return (self.time is not None and self.time.faster
                and self._beyond_siblings(slower=False))

    def describe(self) -> str:
        """One line, as a check message: what was compared with what, and why."""
        since = (f" since the change at {_revision(self.since)}" if self.since else "")
        t = self.time
        if t is None and self.ratio is None:
            return (f"{self.variant}: too little history on this machine: "
                    f"{self.history_runs} run(s){since}, {changepoints.MIN_RUNS} needed")
        if t is None:
            head = (f"its time: {self.history_runs} run(s){since}, too few to judge (the "
                    f"machine's speed changed)")
        else:
            head = (f"median {t.typical:.4g} ms over {t.runs} runs{since} -> "
                    f"{t.typical * t.ratio:.4g} ms, {_factor(t.ratio)} (allowed up to "
                    f"{t.limit:.2f}x: run-to-run spread {t.spread:.1%}, p={t.p:.2g})")
        if self.ratio is not None:
            r = self.ratio
            head += (f"; within the run vs {self.reference}: {_factor(r.ratio)} over "
                     f"{r.runs} runs (allowed up to {r.limit:.2f}x, p={r.p:.2g})")
        elif self.siblings_move is not None and t is not None:
            head += (f"; {self.siblings} moved {_factor(self.siblings_move)}, "
                     f"this one {_factor(t.ratio / self.siblings_move)} beyond them")
        if self.regressed:
            return f"regression of {self.variant} vs history: {head}"
        if self.improved:
            return f"improved: {self.variant} vs history: {head}"
        if self.ratio is not None and (self.ratio.slower or self.ratio.faster):
            assert self.reference_time is not None
            return (f"{self.variant} {'slower' if self.ratio.slower else 'faster'} vs "
                    f"{self.reference} than in its history, but {self.reference} itself "
                    f"moved {_factor(self.reference_time.ratio)} (beyond its history's "
                    f"{self.reference_time.limit:.2f}x), so {self.reference} changed: {head}")
        if t is None:
            return f"{self.variant} unchanged vs history: {head}"
        if t.slower and self.ratio is not None:
            return (f"{self.variant} slower than its history but not vs {self.reference}, "
                    f"so the machine is: {head}")
        if t.slower and self.siblings_move is not None:
            return (f"{self.variant} slower than its history but not beyond {self.siblings}, "
                    f"so the machine is: {head}")
        return f"{self.variant} unchanged vs history: {head}"


def _reference_explains(own: Judgement | None, ref: Judgement | None, *, slower: bool
                        ) -> bool:
    """See :meth:`Verdict._reference_explains`: ``own`` and ``ref`` are the times of the
    variant and its reference judged against their histories."""
    if ref is None or not (ref.faster if slower else ref.slower):
        return False
    if own is None or not (own.slower if slower else own.faster):
        return True
    return abs(math.log(ref.ratio)) > abs(math.log(own.ratio))


def _factor(ratio: float) -> str:
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


def _revision(run: RunInfo) -> str:
    commit = (run.commit or "")[:10] or "unknown commit"
    return f"run {run.id} ({commit}, {run.recorded_at})"


def verdict(points: Sequence[Point], test: str, variant: str, median_ms: float,
            reference: str | None = None, reference_ms: float | None = None, *,
            se: float = 0.0, reference_se: float = 0.0,
            paired: tuple[float, float] | None = None,
            alpha: float = changepoints.ALPHA, min_step: float = changepoints.MIN_STEP
            ) -> Verdict:
    """This run's ``variant`` of ``test`` against the stored ``points`` of one machine: the
    runs since the last change point of each series, judged with
    :func:`changepoints.judge`. ``se`` and ``reference_se``: the standard errors of this
    run's medians on the log scale (:func:`changepoints.log_se` of its rounds). ``paired``:
    this run's within-run ratio to the reference and its log-scale error, round by round
    (:func:`~pytest_hwopt.results.history.paired_ratio`), as the stored runs' ratios are
    read; without it the ratio is ``median_ms / reference_ms`` with error
    ``sqrt(se^2 + reference_se^2)``."""
    series = {(s.kind): s for s in build(p for p in points
                                         if p.test == test and p.variant in (variant,
                                                                            reference))
              if s.variant == variant}
    time_s = series.get(TIME)
    time_j: Judgement | None = None
    since: RunInfo | None = None
    history: list[float] = []
    if time_s is not None:
        history, since = _newest(time_s, alpha, min_step)
        time_j = changepoints.judge(history, median_ms, alpha=alpha, min_step=min_step,
                                    value_se=se)
    ratio_j: Judgement | None = None
    moved: float | None = None
    ref_j: Judgement | None = None
    ratio_s = series.get(RATIO)
    if (reference and reference_ms and ratio_s is not None and ratio_s.reference == reference
            and math.isfinite(reference_ms) and reference_ms > 0):
        ratios, _ = _newest(ratio_s, alpha, min_step)
        value, value_se = paired if paired is not None else (
            median_ms / reference_ms, math.hypot(se, reference_se))
        ratio_j = changepoints.judge(ratios, value, alpha=alpha, min_step=min_step,
                                     value_se=value_se)
        ref_times = [p.median_ms for p in points if p.test == test and p.variant == reference]
        if ref_times:
            ref_s = Series("", test, reference, TIME, None, (), tuple(ref_times))
            ref_history = _newest(ref_s, alpha, min_step)[0]
            moved = reference_ms / _geomean(ref_history)
            ref_j = changepoints.judge(ref_history, reference_ms, alpha=alpha,
                                       min_step=min_step, value_se=reference_se)
    return Verdict(test, variant, time_j, ratio_j, reference, since, len(history), min_step,
                   moved, ref_j)


class Figures(Protocol):
    """What a run says of one variant: a :class:`~pytest_hwopt.results.history.Point`, a
    measurement, or :class:`RunFigures` of a results row."""

    @property
    def median_ms(self) -> float: ...

    @property
    def rounds_ms(self) -> Sequence[float]: ...

    @property
    def rounds_disturbed(self) -> Sequence[bool]: ...


@dataclass(frozen=True)
class RunFigures:
    """:class:`Figures` of a results document's row (its ``median_ms``, ``rounds_ms``,
    ``rounds_disturbed``)."""

    median_ms: float
    rounds_ms: Sequence[float] = ()
    rounds_disturbed: Sequence[bool] = ()

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RunFigures:
        return cls(float(row["median_ms"]), row.get("rounds_ms") or (),
                   row.get("rounds_disturbed") or ())


def judge_run(points: Sequence[Point], test: str, variant: str, own: Figures,
              reference: str | None = None, ref: Figures | None = None) -> Verdict:
    """:func:`verdict` of one variant of a run, its errors and its within-run ratio read from
    the run's rounds: the medians' errors from the undisturbed rounds
    (:func:`changepoints.log_se`), the ratio round by round
    (:func:`~pytest_hwopt.results.history.paired_ratio`). ``ref``: the reference's figures
    in the same run (None: judged on its time alone)."""
    if ref is None:
        return verdict(points, test, variant, own.median_ms,
                       se=changepoints.log_se(clean_rounds(own.rounds_ms,
                                                           own.rounds_disturbed)))
    return verdict(
        points, test, variant, own.median_ms, reference, ref.median_ms,
        se=changepoints.log_se(clean_rounds(own.rounds_ms, own.rounds_disturbed)),
        reference_se=changepoints.log_se(clean_rounds(ref.rounds_ms, ref.rounds_disturbed)),
        paired=paired_ratio(own.rounds_ms, ref.rounds_ms, own.rounds_disturbed,
                            ref.rounds_disturbed))


def with_siblings(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """``verdicts`` with each time-only one (no reference of its own) given its test's
    other judged variants' geometric mean move (:attr:`Verdict.siblings_move`)."""
    out = []
    for v in verdicts:
        if v.time is not None and v.ratio is None:
            others = [o.time.ratio for o in verdicts
                      if o.test == v.test and o.variant != v.variant and o.time is not None]
            if others:
                v = dataclasses.replace(v, siblings_move=_geomean(others))
        out.append(v)
    return out


#: variants judged just before a test with one judged variant whose moves stand in for the
#: machine's speed today (:func:`with_neighbours`)
NEIGHBOURS: Final = 8


def with_neighbours(verdicts: Sequence[Verdict], earlier: Sequence[Verdict] = (),
                    window: int = NEIGHBOURS) -> list[Verdict]:
    """:func:`with_siblings`, and for a time-only verdict still without siblings (its test
    has no other judged variant) the geometric mean move of the last ``window`` judged
    variants of other tests before it in this run: ``earlier`` (judged before, in run
    order), then ``verdicts`` themselves in order. A machine whose speed jumps (a cloud
    host's runs sit in states 35% apart, for minutes) slows the tests around a one-variant
    test alike; a change of that test's own code moves it alone. A change that slows
    every test alike reads as a slower machine here; its series still show it to
    ``pytest-hwopt history``."""
    out = with_siblings(verdicts)
    seen = [v for v in earlier if v.time is not None]
    for n, v in enumerate(out):
        if v.time is not None and v.ratio is None and v.siblings_move is None:
            before = [o.time.ratio for o in seen if o.test != v.test  # type: ignore[union-attr]
                      ][-window:]
            if before:
                out[n] = dataclasses.replace(
                    v, siblings_move=_geomean(before),
                    siblings=f"the {len(before)} variant(s) judged before it in this run")
        if v.time is not None:
            seen.append(v)
    return out


def _newest(s: Series, alpha: float, min_step: float) -> tuple[list[float], RunInfo | None]:
    found = changepoints.detect(s.values, alpha=alpha, min_step=min_step)
    start = found[-1].index if found else 0
    return list(s.values[start:]), (s.runs[start] if found and s.runs else None)


# ---- the command's report ------------------------------------------------------------------

HEADER: Final = ("test", "variant", "runs", "first", "latest", "change points")


def report_lines(analysed: Sequence[Analysed], machines: Mapping[str, Mapping[str, Any]]
                 ) -> list[str]:
    """Per machine, a table of its series and a line per change point."""
    lines: list[str] = []
    by_machine: dict[str, list[Analysed]] = {}
    for a in analysed:
        by_machine.setdefault(a.series.fingerprint, []).append(a)
    for fid, group in by_machine.items():
        runs = {r.id for a in group for r in a.series.runs}
        lines.append(f"machine {machine_label(fid, machines.get(fid, {}))}: {len(runs)} run(s)")
        rows = [[a.series.test, a.series.label, str(len(a.series.values)),
                 _value(a.series, a.series.values[0]), _value(a.series, a.series.values[-1]),
                 str(len(a.changes))] for a in group]
        lines.extend(table(rows, HEADER))
        for a in group:
            for cp in a.changes:
                lines.append("  " + change_line(a.series, cp))
    return lines


def change_line(s: Series, cp: ChangePoint) -> str:
    """``test_it.py::test_pair fast: +25.0% at run 7 (commit abc1234 on main, 2026-...):
    0.1 ms -> 0.125 ms, p=0.0004``."""
    run = s.runs[cp.index]
    where = ", ".join(x for x in (
        f"commit {run.commit[:10]}" if run.commit else "commit unknown",
        f"on {run.branch}" if run.branch else "", run.recorded_at) if x)
    return (f"{s.test} {s.label}: {cp.step:+.1%} at run {run.id} ({where}): "
            f"{_value(s, cp.before)} -> {_value(s, cp.after)}, p={cp.p:.2g}")


def _value(s: Series, value: float) -> str:
    return f"{value:.4g}x" if s.kind == RATIO else f"{value:.4g} ms"


# ---- the document's history section (the HTML report's trend plot) ---------------------------

def trend_section(points: Sequence[Point], tests: Sequence[str], store: str, machine: str,
                  *, with_changes: bool = True) -> dict[str, Any]:
    """The document's ``history`` entry: per test of ``tests`` and variant, its time series on
    this machine (``points`` of one fingerprint, this run's included) with its change points
    (``with_changes``: ruptures is installed; else ``changes`` are empty and
    ``changes_note`` says why)."""
    wanted = set(tests)
    out: list[dict[str, Any]] = []
    for s in build(p for p in points if p.test in wanted):
        if s.kind != TIME:
            continue
        found = changepoints.detect(s.values) if with_changes else []
        out.append({"test": s.test, "variant": s.variant, "unit": "ms",
                    "runs": [r.id for r in s.runs], "times": [r.recorded_at for r in s.runs],
                    "commits": [r.commit for r in s.runs], "values": list(s.values),
                    "changes": [{"index": c.index, "run": s.runs[c.index].id,
                                 "before": c.before, "after": c.after, "step": c.step,
                                 "p": c.p} for c in found]})
    section: dict[str, Any] = {"store": store, "machine": machine, "series": out}
    if not with_changes:
        section["changes_note"] = (f"change points need ruptures: "
                                   f"{changepoints.INSTALL_HINT}")
    return section
