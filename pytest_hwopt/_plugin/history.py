"""The run history in a session: ``--hwopt-history=PATH`` and ``--hwopt-compare=history``.

Used by :class:`pytest_hwopt._plugin.results.ResultsPlugin`, which owns the results options:

``--hwopt-history=PATH`` (ini ``hwopt_history``, relative to the ini file)
    at the end of the run (in the controller under xdist), the run's document is appended to
    the store at PATH (:mod:`pytest_hwopt.results.history`) with the commit, branch and the
    machine fingerprint. A path that cannot be written, or a file that is not a history
    store, is a usage error at start naming it.
``--hwopt-compare=history``
    each measured variant is judged against the runs of the store with this machine's
    fingerprint (:func:`pytest_hwopt.results.series.verdict`); a regression appends a failed
    ``history`` check (the test fails as with a budget), an improvement a passed one. A
    variant with too little history is listed in the summary, not failed. Needs ruptures
    (``pip install 'pytest-hwopt[history]'``): without it, a usage error at start.

Loading this module imports neither sqlite3 nor NumPy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwopt._plugin.options import ini as _ini
from pytest_hwopt._plugin.options import output_path

if TYPE_CHECKING:
    from pytest_hwopt.results.history import Point
    from pytest_hwopt.results.series import Verdict

#: the value of --hwopt-compare that judges against the history store
COMPARE_VALUE = "history"


class SessionHistory:
    """The history store of one session: checked at start, read for judging, appended to
    at the end."""

    def __init__(self, config: pytest.Config, path: Path, shown: str, compare: bool) -> None:
        self.config = config
        self.path = path
        self.shown = shown  # as the user gave it, for messages
        self.compare = compare
        self.appended: int | None = None
        self.fingerprint: str | None = None
        self.machine = ""
        self.notes: list[str] = []
        self.verdicts: list[Verdict] = []
        #: the variants judged last in this session (series.with_neighbours)
        self.judged_before: list[Verdict] = []
        self.busy: list[str] = []  # variants whose samples (or reference's) were too disturbed
        self._points: list[Point] | None = None
        self._check()

    # ---- at start ---------------------------------------------------------------------

    def _check(self) -> None:
        from pytest_hwopt.results import changepoints, history

        if self.path.exists():
            try:
                history.open_store(self.path, create=False).close()
            except history.HistoryError as exc:
                raise pytest.UsageError(f"--hwopt-history={self.shown}: {exc}") from None
        if self.compare and not changepoints.ruptures_available():
            raise pytest.UsageError(
                "--hwopt-compare=history: finding change points needs ruptures, which is not "
                f"installed: {changepoints.INSTALL_HINT}")

    # ---- judging (in the process that measured) -----------------------------------------

    def _load(self, environment: dict[str, Any]) -> list[Point]:
        if self._points is None:
            from pytest_hwopt.results import history

            self.fingerprint, description = history.fingerprint(environment)
            self.machine = history.machine_label(self.fingerprint, description)
            if not self.path.exists():
                self._points = []
            else:
                with history.SqliteStore(self.path, create=False) as store:
                    self._points = store.points(self.fingerprint)
        return self._points

    def checks(self, item: pytest.Item, checks: list[Any], measurements: dict[str, Any],
               environment: Callable[[], dict[str, Any]]) -> None:
        """Append a ``history`` check per variant that regressed or improved."""
        if not self.compare or not measurements:
            return
        from pytest_hwopt.core.checks import Check, Status
        from pytest_hwopt.core.measurement import MAX_DISTURBED_FRACTION
        from pytest_hwopt.core.outcomes import BUSY
        from pytest_hwopt.results import history, series

        try:
            points = [p for p in self._load(environment()) if p.test == item.nodeid]
        except history.HistoryError as exc:
            raise pytest.UsageError(f"--hwopt-history={self.shown}: {exc}") from None
        pairs = [(item.nodeid, c.variant, c.vs) for c in checks if c.kind == "speedup" and c.vs]
        pairs += [(item.nodeid, name, m.extra["reference"]) for name, m in measurements.items()
                  if m.extra.get("reference") and m.extra["reference"] != name]
        refs = history.pair_references(pairs)
        judged: list[tuple[str, Any, str | None, Any, series.Verdict]] = []
        for name, m in measurements.items():
            if not m.samples_ms:
                continue
            reference = refs.get((item.nodeid, name))
            ref = measurements.get(reference) if reference else None
            if ref is not None and not ref.samples_ms:
                ref = None
            v = series.judge_run(points, item.nodeid, name, m, reference, ref)
            judged.append((name, m, reference, ref, v))
        # a variant without a reference is also judged against its test's other variants,
        # or against the variants judged just before it (series.with_neighbours)
        moved = series.with_neighbours([j[4] for j in judged], self.judged_before)
        self.judged_before.extend(v for v in moved if v.time is not None)
        del self.judged_before[:-series.NEIGHBOURS]
        for (name, m, reference, ref, _), v in zip(judged, moved):
            if not (v.regressed or v.improved):
                continue
            # as for budgets: contended data decides nothing (core.kinds.busy_reason)
            busy = [(x, f) for x, f in ((name, m.disturbed_fraction), (reference or "", (
                    ref.disturbed_fraction if ref is not None else 0.0)))
                    if f > MAX_DISTURBED_FRACTION]
            reason = (f"{BUSY}: {busy[0][1]:.0%} of samples of {busy[0][0]} disturbed (at "
                      f"most {MAX_DISTURBED_FRACTION:.0%} allowed)") if busy else ""
            status = (Status.INCONCLUSIVE if busy else
                      Status.FAILED if v.regressed else Status.PASSED)
            # the figure that decided: the within-run ratio where there is one, else the time
            decided_by = v.ratio if v.ratio is not None else v.time
            assert decided_by is not None  # a regression or improvement was judged
            timed = v.time
            checks.append(Check(
                kind="history", variant=name, budget=decided_by.limit,
                measured=decided_by.ratio, unit="x", status=status, reason=reason,
                message=v.describe() + (f" ({reason})" if reason else ""),
                metric="ratio_vs_reference" if v.ratio is not None else "median_ratio",
                test=item.nodeid, point_passed=not v.regressed,
                detail={"store": str(self.path), "machine": self.fingerprint,
                        "runs": decided_by.runs, "spread": decided_by.spread,
                        "p": decided_by.p,
                        "time_ratio": None if timed is None else timed.ratio,
                        "time_limit": None if timed is None else timed.limit,
                        "verdict": "regression" if v.regressed else "improvement",
                        **({"reference": reference, "ratio_vs_reference": v.ratio.ratio,
                            "ratio_limit": v.ratio.limit} if v.ratio is not None else {})}))

    # ---- at the end (controller) --------------------------------------------------------

    def session_results(self, document: dict[str, Any], environment: dict[str, Any]) -> None:
        """Summarise this run against the store (with ``compare``), then append it."""
        from pytest_hwopt.core.measurement import MAX_DISTURBED_FRACTION
        from pytest_hwopt.results import changepoints, history, series

        results = document.get("results") or []
        if self.compare:
            points = self._load(environment)
            refs = history.references(document)
            rows = {(r["test"], r["variant"]): r for r in results}
            for r in results:
                if r.get("median_ms") is None:
                    continue  # no completed request: nothing to judge
                reference = refs.get((r["test"], r["variant"]))
                ref = rows.get((r["test"], reference or ""))
                v = series.judge_run(
                    [p for p in points if p.test == r["test"]], r["test"], r["variant"],
                    series.RunFigures.of_row(r), reference,
                    series.RunFigures.of_row(ref) if ref else None)
                if v.judged and any((x or {}).get("disturbed_fraction", 0.0)
                                    > MAX_DISTURBED_FRACTION for x in (r, ref)):
                    self.busy.append(f"{r['test']} {r['variant']}")
                    continue
                self.verdicts.append(v)
            self.verdicts = series.with_neighbours(self.verdicts)
        if not results:
            self.notes.append("hwopt: nothing measured; run not added to the history")
            return
        run = history.run_of(document, source="pytest", environment=environment)
        output_path(self.config, "--hwopt-history", self.shown, "history.sqlite")
        try:
            with history.SqliteStore(self.path) as store:
                self.appended = store.append(run)
                points = store.points(run.fingerprint)
        except history.HistoryError as exc:
            self.notes.append(f"hwopt: run not added to the history: {exc}")
            return
        self.machine = history.machine_label(run.fingerprint, run.machine)
        # each variant's series on this machine, this run included, for the HTML report
        document["history"] = series.trend_section(
            points, sorted({r["test"] for r in results}), str(self.path), run.fingerprint,
            with_changes=changepoints.ruptures_available())

    def summary_lines(self) -> list[str]:
        lines: list[str] = []
        if self.compare:
            from pytest_hwopt.results.changepoints import MIN_RUNS

            judged = [v for v in self.verdicts if v.judged]
            new = [v for v in self.verdicts if not v.judged]
            regressed = [v for v in judged if v.regressed]
            improved = [v for v in judged if v.improved]
            lines.append(f"hwopt: compared with the history of machine {self.machine or '-'} "
                         f"in {self.shown}: {len(judged)} variant(s) judged, "
                         f"{len(regressed)} regression(s), {len(improved)} improvement(s)")
            machine_slower = [v for v in judged if v.time is not None and v.time.slower
                              and v.ratio is not None and not v.regressed]
            for v in regressed + improved + machine_slower:
                lines.append(f"hwopt: {v.test}: {v.describe()}")
            if self.busy:
                lines.append(f"hwopt: not judged against the history (machine busy: most "
                             f"samples disturbed): {', '.join(self.busy)}")
            if new:
                listed = ", ".join(f"{v.test} {v.variant}" for v in new[:10])
                more = f" and {len(new) - 10} more" if len(new) > 10 else ""
                lines.append(f"hwopt: too little history (reported, not failed; "
                             f"{MIN_RUNS} runs needed) for {len(new)} variant(s): "
                             f"{listed}{more}")
        if self.appended is not None:
            lines.append(f"hwopt: run {self.appended} added to the history {self.shown} "
                         f"(machine {self.machine})")
        return lines + self.notes


def session_history(config: pytest.Config, compare_value: str | None) -> SessionHistory | None:
    """The session's history from ``--hwopt-history`` or the ini key ``hwopt_history``; None
    without either. ``--hwopt-compare=history`` without a store is a usage error."""
    given = config.getoption("hwopt_history", None)
    compare = compare_value == COMPARE_VALUE
    if given == "" and not compare:  # given empty: off, whatever the ini file says
        return None
    if given:
        shown = str(given)
        path = Path(shown).expanduser()
        if not path.is_absolute():
            path = config.invocation_params.dir / path
    else:
        shown = _ini(config, "hwopt_history")
        if not shown:
            if compare:
                raise pytest.UsageError(
                    "--hwopt-compare=history needs a history store: give --hwopt-history=PATH "
                    "(or the ini key hwopt_history)")
            return None
        base = config.inipath.parent if config.inipath else config.rootpath
        path = Path(os.path.expanduser(shown))
        if not path.is_absolute():
            path = base / path
    output_path(config, "--hwopt-history", str(path), "history.sqlite")
    return SessionHistory(config, path, shown, compare)


def revision_entry(config: pytest.Config) -> dict[str, Any]:
    """The document's ``revision``: when the run ended, its commit and branch (CI variables,
    else git in the rootdir; ``None`` where unknown)."""
    from pytest_hwopt.results import history

    rev = history.revision(os.environ, config.rootpath)
    return {"time": history.now_utc(), "commit": rev.commit, "branch": rev.branch}
