"""``python -m pytest_hwopt`` / ``pytest-hwopt``: work with saved results outside pytest.

    pytest-hwopt compare BASELINE.json CURRENT.json [--max-regression 10%] [--fail-on-regression]
    pytest-hwopt history STORE [--add FILE.json ...] [--test PATTERN] [--fail-on-change]

prints, per test and variant, the baseline and current median, their ratio, the
Mann-Whitney p-value and the verdict (regression, improvement, unchanged, new,
missing), after any environment differences. Exit status: 0; 1 with
``--fail-on-regression`` when a variant regressed; 2 for bad arguments or files
that are not pytest-hwopt results (the message names the file).

``history`` adds results files to a history store (``--hwopt-history``) and prints, per
machine fingerprint, test and variant, the series and its change points
(:mod:`pytest_hwopt.results.series`). Exit status: 0; 1 with ``--fail-on-change`` when the
newest segment of a series is a significant slowdown; 2 for bad arguments, a file that is
not a results document or a store that is not a history store (named), or without ruptures.

This module imports neither pytest nor torch (the package's ``__init__`` imports
pytest for the marker factories).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from pytest_hwopt.results import baseline

if TYPE_CHECKING:
    from pytest_hwopt.results.history import Run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-hwopt", description="Work with pytest-hwopt results files.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare", help="compare two results files (--hwopt-json / --hwopt-save)",
        description="Compare a run with a baseline, variant by variant: ratio of medians "
                    "(current / baseline) and a Mann-Whitney U test (significant at "
                    f"p < {baseline.ALPHA}).")
    compare.add_argument("baseline", metavar="BASELINE.json")
    compare.add_argument("current", metavar="CURRENT.json")
    compare.add_argument("--max-regression", default="10%", metavar="FRACTION",
                         help="slow-down that counts as a regression: 10%% or 0.1 "
                              "(default: 10%%)")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit with status 1 when a variant regressed")
    history = commands.add_parser(
        "history", help="a history store (--hwopt-history): series and change points",
        description="Per machine fingerprint, test and variant: the series of per-run "
                    "medians (and within-run ratios to a reference variant) and the "
                    "significant change points in it.")
    history.add_argument("store", metavar="STORE", help="the SQLite history store")
    history.add_argument("--add", nargs="+", default=[], metavar="FILE.json",
                         help="first add these results files (--hwopt-json, e.g. from other "
                              "machines of a CI matrix) to the store")
    history.add_argument("--test", default=None, metavar="PATTERN",
                         help="only tests whose node id matches (* and ?), or contains, "
                              "PATTERN")
    history.add_argument("--fail-on-change", action="store_true",
                         help="exit with status 1 when the newest segment of a series is a "
                              "significant slowdown (at 1%% family-wise over all variants)")
    return parser


def run_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_hwopt.results import changepoints, history, series

    def fail(message: str) -> int:
        print(f"pytest-hwopt history: error: {message}", file=err)
        return 2

    try:
        runs = [_run_of_file(path) for path in args.add]
        store = history.open_store(args.store, create=bool(args.add))
    except (history.HistoryError, baseline.BaselineError) as exc:
        return fail(str(exc))
    try:
        for path, run in zip(args.add, runs):
            number = store.append(run)
            print(f"added {path} as run {number} (machine "
                  f"{history.machine_label(run.fingerprint, run.machine)})", file=out)
        machines = store.machines()
        found = series.build(store.points(test=args.test))
    except history.HistoryError as exc:
        return fail(str(exc))
    finally:
        store.close()
    if not found:
        what = f" matching {args.test!r}" if args.test else ""
        print(f"{args.store}: no results{what}", file=out)
        return 0
    try:
        analysed = series.analyse(found)
    except changepoints.MissingLibrary as exc:
        return fail(str(exc))
    for line in series.report_lines(analysed, machines):
        print(line, file=out)
    slow = series.slowdowns(analysed)
    changes = sum(len(a.changes) for a in analysed)
    print(f"{len(analysed)} series, {changes} change point(s) (p < {changepoints.ALPHA}, "
          f"steps of at least {changepoints.MIN_STEP:.0%}); newest segment slower in "
          f"{len(slow)} (significant at {changepoints.ALPHA} over all variants, Holm)",
          file=out)
    for a in slow:
        cp = a.newest_slowdown
        assert cp is not None
        print(f"slowdown: {series.change_line(a.series, cp)}", file=out)
    return 1 if slow and args.fail_on_change else 0


def _run_of_file(path: str) -> Run:
    """A history run of a results file; its time is the file's when it records none."""
    import datetime
    import os

    from pytest_hwopt.results import history

    document = baseline.load_document(path)
    kept = document.get("revision")
    when = kept.get("time") if isinstance(kept, dict) else None
    if not when:
        when = datetime.datetime.fromtimestamp(
            os.path.getmtime(path), datetime.timezone.utc).replace(microsecond=0).isoformat()
    return history.run_of(document, source=path, recorded_at=str(when))


def compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        threshold = baseline.parse_threshold(args.max_regression)
    except ValueError as exc:
        print(f"pytest-hwopt compare: error: --max-regression={exc}", file=err)
        return 2
    try:
        old = baseline.load_document(args.baseline)
        new = baseline.load_document(args.current)
    except baseline.BaselineError as exc:
        print(f"pytest-hwopt compare: error: {exc}", file=err)
        return 2
    print(f"baseline: {args.baseline}", file=out)
    print(f"current:  {args.current}", file=out)
    for line in baseline.environment_mismatch(old.get("environment") or {},
                                              new.get("environment") or {}):
        print(f"environment differs: {line}", file=out)
    rows = baseline.compare_documents(old, new, threshold)
    if rows:
        for line in baseline.format_table(rows):
            print(line, file=out)
    print(baseline.summary_line(rows, threshold), file=out)
    regressed = any(r.verdict == baseline.REGRESSION for r in rows)
    return 1 if regressed and args.fail_on_regression else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "compare":
        return compare(args, sys.stdout, sys.stderr)
    if args.command == "history":
        return run_history(args, sys.stdout, sys.stderr)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
