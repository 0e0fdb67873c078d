"""Every check where CI systems look: JUnit XML and the GitHub Actions job summary.

Pure: no pytest, no torch. The plugin puts these texts in place:

- :func:`system_out_text`: one test's checks as a small plain-text table, written to the
  testcase's ``<system-out>`` of pytest's JUnit XML (``--junitxml``; pytest writes it when
  ``junit_logging`` includes stdout: ``system-out``, ``out-err`` or ``all``);
- :func:`junit_properties`: one ``<property>`` per check for the ``<testsuite>`` element,
  the place the ``xunit2`` family (pytest's default) allows properties;
- :func:`step_summary`: a markdown table of every check, appended to the file named by
  ``GITHUB_STEP_SUMMARY`` (GitHub Actions shows it on the run's summary page).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pytest_hwopt.results.schema import Record
from pytest_hwopt.results.terminal import (
    budget_text,
    check_name,
    format_value,
    interval_text,
    reason_text,
    table,
    totals_line,
)

__all__ = ["CHECK_HEADER", "append_step_summary", "check_rows", "junit_properties",
           "step_summary", "system_out_text"]

#: the columns of :func:`check_rows`
CHECK_HEADER: Final = ("test", "check", "variant", "measured", "interval", "budget", "status",
                       "reason")
#: the environment variable GitHub Actions sets to the job summary's file
STEP_SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"


def _check_cells(check: Mapping[str, Any]) -> list[str]:
    """check .. reason cells of one check (``interval`` empty for a single reading)."""
    return [check_name(check), str(check.get("variant", "")),
            format_value(check.get("measured"), str(check.get("unit", ""))),
            interval_text(check), budget_text(check), str(check.get("status", "")),
            reason_text(check)]


def check_rows(records: Iterable[Record]) -> list[list[str]]:
    """Cells under :data:`CHECK_HEADER`: one row per check, passing ones included; a test
    measured without budgets gets one ``median`` row per variant, status ``measured``."""
    rows: list[list[str]] = []
    for rec in records:
        test = rec["test"]
        for check in rec.get("checks", []):
            rows.append([test, *_check_cells(check)])
        if not rec.get("checks"):
            for var in rec.get("results", []):
                rows.append([test, "median", var["variant"], format_value(var["median_ms"], "ms"),
                             f"p95 {format_value(var['p95_ms'], 'ms')}", "-", "measured", ""])
    return rows


def system_out_text(record: Record) -> str:
    """One test's checks as plain text (header line, then a table without the test
    column), for the testcase's ``<system-out>``; ``""`` when the test has no rows."""
    rows = [row[1:] for row in check_rows([record])]
    if not rows:
        return ""
    return "\n".join(["hwopt checks:", *table(rows, CHECK_HEADER[1:])]) + "\n"


def junit_properties(records: Iterable[Record]) -> list[tuple[str, str]]:
    """``(name, value)`` per check for ``<testsuite><properties>``.

    name: ``hwopt <test> | <check> | <variant>``; value: ``<status>: <measured>
    <interval>, budget <budget>`` and ``; <reason>`` when there is one, e.g.
    ``passed: 3.02x [2.90x, 3.10x], budget >= 2.00x``.
    """
    out: list[tuple[str, str]] = []
    for row in check_rows(records):
        test, check, variant, measured, interval, budget, status, reason = row
        value = f"{status}: {measured}" + (f" {interval}" if interval else "")
        value += f", budget {budget}" + (f"; {reason}" if reason else "")
        out.append((f"hwopt {test} | {check} | {variant}", value))
    return out


def _md_cell(text: str) -> str:
    """A markdown table cell: pipes escaped, lines joined."""
    return " ".join(text.replace("\\", "\\\\").replace("|", "\\|").split())


def _md_code(text: str) -> str:
    """``text`` as inline code (a test id keeps its brackets and underscores as written)."""
    if not text or "`" in text:
        return _md_cell(text)
    return f"`{_md_cell(text)}`"


def step_summary(records: Sequence[Record], report_only: bool = False,
                 strict: bool = False, title: str = "pytest-hwopt") -> str:
    """Markdown for a GitHub Actions job summary: a heading, the totals line and a table of
    every check (columns :data:`CHECK_HEADER`); failed and inconclusive statuses in bold.
    ``""`` without records."""
    if not records:
        return ""
    lines = [f"### {title}", "", _md_cell(totals_line(records, report_only, strict)), "",
             "| " + " | ".join(CHECK_HEADER) + " |",
             "|" + "|".join("---" for _ in CHECK_HEADER) + "|"]
    for row in check_rows(records):
        test, *rest = row
        cells = [_md_code(test)] + [_md_cell(c) for c in rest]
        if row[6] in ("failed", "inconclusive"):
            cells[6] = f"**{cells[6]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n"


def append_step_summary(path: str | Path, text: str) -> None:
    """Append ``text`` to the job summary file (UTF-8); other steps' summaries stay.

    Raises :class:`OSError` when the file cannot be written.
    """
    with open(path, "a", encoding="utf-8") as out:
        out.write(text)
