"""``python -m pytest_hwopt`` / ``pytest-hwopt``: work with saved results outside pytest.

    pytest-hwopt compare BASELINE.json CURRENT.json [--max-regression 10%] [--fail-on-regression]

prints, per test and variant, the baseline and current median, their ratio, the
Mann-Whitney p-value and the verdict (regression, improvement, unchanged, new,
missing), after any environment differences. Exit status: 0; 1 with
``--fail-on-regression`` when a variant regressed; 2 for bad arguments or files
that are not pytest-hwopt results (the message names the file).

This module imports neither pytest nor torch (the package's ``__init__`` imports
pytest for the marker factories).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from pytest_hwopt.results import baseline


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
    return parser


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
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
