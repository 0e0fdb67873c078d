"""The terminal summary: the table of checks and variants, the notes, the totals line.

Pure: no pytest, no torch. The results document, its records and its builder live in
:mod:`pytest_hwopt.results.schema`, the JSON writer in :mod:`pytest_hwopt.results.jsonio`;
``document``, ``JSON_VERSION``, ``write_json_atomic`` and ``jsonable`` stay importable from
here for older imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pytest_hwopt.core import kinds
from pytest_hwopt.results.jsonio import jsonable, write_json_atomic
from pytest_hwopt.results.schema import FORMAT, Record, document

__all__ = ["JSON_VERSION", "SUMMARY_HEADER", "budget_text", "check_name", "document",
           "format_value", "interval_text", "jsonable", "note_lines", "reason_text",
           "status_counts", "status_text", "summary_rows", "table", "totals_line",
           "write_json_atomic"]

JSON_VERSION: Final = FORMAT


def format_value(value: float | None, unit: str) -> str:
    """``3.02x``, ``1.25 ms``, ``12.3 MB``; ``-`` for nothing."""
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x" if value < 1000 else f"{value:.4g}x"
    if unit == "":
        return f"{value:.3g}"
    return f"{value:.4g} {unit}"


def summary_rows(records: Iterable[Record]) -> list[list[str]]:
    """Cells under :data:`SUMMARY_HEADER`: one row per test and check; a test without
    budgets gets one row per variant. The notes say ``contended``, ``throttled``, and
    ``from cache`` for a prepared variant whose artefacts came from the cache."""
    rows: list[list[str]] = []
    for rec in records:
        test = rec["test"]
        flags = []
        contention, telemetry = rec.get("contention"), rec.get("telemetry")
        if contention and contention.get("contended"):
            flags.append("contended")
        if telemetry and telemetry.get("throttled"):
            flags.append("throttled")
        # a prepared variant whose artefacts (ONNX file, engine) came from the cache
        cached = {var["variant"] for var in rec.get("results", []) if var.get("from_cache")}
        for check in rec.get("checks", []):
            notes = flags + (["from cache"] if check["variant"] in cached else [])
            rows.append([test, check_name(check), check["variant"],
                         format_value(check.get("measured"), check["unit"]),
                         interval_text(check), budget_text(check), status_text(check),
                         " ".join(notes)])
        if not rec.get("checks"):
            for var in rec.get("results", []):
                notes = flags + (["from cache"] if var["variant"] in cached else [])
                rows.append([test, "median", var["variant"],
                             format_value(var["median_ms"], "ms"),
                             f"p95 {format_value(var['p95_ms'], 'ms')}", "-", "measured",
                             " ".join(notes)])
    return rows


def note_lines(records: Iterable[Record]) -> list[str]:
    """``test: name=value, ...`` for tests that noted derived figures, and
    ``test: variant: first call ...`` for a variant whose first call was far slower than
    its steady state (``first_call_note``)."""
    lines: list[str] = []
    for rec in records:
        notes = rec.get("notes") or {}
        if notes:
            text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in notes.items())
            lines.append(f"{rec['test']}: {text}")
        for var in rec.get("results", []):
            if var.get("first_call_note"):
                lines.append(f"{rec['test']}: {var['variant']}: {var['first_call_note']}")
    return lines


#: the reason of an inconclusive check that names none (documents written before checks
#: carried a ``reason``): the interval straddled the budget when time ran out
STRADDLES: Final = "interval straddles the budget"


def reason_text(check: Mapping[str, Any]) -> str:
    """Why a check came out as it did: its ``reason`` (``machine busy: 83% of samples
    disturbed``); for an inconclusive check without one, that the interval straddles the
    budget; else ``""``."""
    reason = str(check.get("reason") or "")
    if not reason and check.get("status") == "inconclusive":
        return STRADDLES
    return reason


def status_text(check: Mapping[str, Any]) -> str:
    """The status column: the status, with the check's reason in parentheses when it has
    one (``inconclusive (machine busy: 83% of samples disturbed)``); an inconclusive
    check always has one (:func:`reason_text`)."""
    status, reason = str(check["status"]), reason_text(check)
    return f"{status} ({reason})" if reason else status


def interval_text(check: Mapping[str, Any]) -> str:
    """The interval column: ``[2.90x, 3.10x]``; ``""`` for a single reading."""
    if check.get("low") is None or check["low"] == check.get("high"):
        return ""
    return (f"[{format_value(check['low'], check['unit'])}, "
            f"{format_value(check['high'], check['unit'])}]")


def check_name(check: Mapping[str, Any]) -> str:
    """The check column: ``speedup vs naive``, ``latency p95``, ``cold start`` (the kind's
    registry entry words it; a check that is no budget kind reads as its kind)."""
    return kinds.check_name(check["kind"], check.get("vs"), check.get("metric", ""))


def budget_text(check: Mapping[str, Any]) -> str:
    """The budget column: ``>= 2.00x``, ``<= 5 ms``, ``atol 0.0001``; ``-`` without one."""
    budget = check.get("budget")
    if budget is None:
        return "-"
    kind = kinds.find(check["kind"])
    worded = kind.budget_text(budget, check.get("metric")) if kind is not None else None
    if worded is not None:
        return worded
    return f"{kinds.comparison_of(check['kind'])} {format_value(budget, check['unit'])}"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    """Left-aligned columns, two spaces apart."""
    all_rows = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(all_rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


SUMMARY_HEADER = ("test", "check", "variant", "measured", "95% CI", "budget", "status", "notes")


def status_counts(checks: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """status -> how many of ``checks`` have it, in first-seen order."""
    counts: dict[str, int] = {}
    for check in checks:
        status = str(check.get("status", ""))
        counts[status] = counts.get(status, 0) + 1
    return counts


def totals_line(records: Sequence[Record], report_only: bool = False,
                strict: bool = False) -> str:
    """``hwopt: 2 test(s) measured on cpu; checks: 3 passed, 1 failed`` (statuses sorted;
    ``no budgets`` without checks), with a note when budgets did not fail tests, or when
    inconclusive checks only warned (they fail with ``strict``); ``run on cpu with timing
    off (--hwopt-disable: ...)`` in place of ``measured on cpu`` when every test was."""
    counts = status_counts(check for rec in records for check in rec["checks"])
    device = records[0].get("device", "") if records else ""
    totals = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no budgets"
    note = ""
    if report_only:
        note = "; report only: budgets did not fail tests"
    elif counts.get("inconclusive") and not strict:
        note = ("; inconclusive checks warned (InconclusiveWarning) and did not fail tests: "
                "--hwopt-strict fails them")
    done = f"measured on {device}"
    if records and all(rec.get("stopped") == "single call" for rec in records):
        done = f"run on {device} with timing off (--hwopt-disable: each variant called once)"
    return f"hwopt: {len(records)} test(s) {done}; checks: {totals}{note}"
