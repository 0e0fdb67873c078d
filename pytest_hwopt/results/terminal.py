"""Pure formatters: the terminal summary table and the JSON document."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

JSON_VERSION = 1


def format_value(value: float | None, unit: str) -> str:
    """``3.02x``, ``1.25 ms``, ``12.3 MB``; ``-`` for nothing."""
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x" if value < 1000 else f"{value:.4g}x"
    if unit == "":
        return f"{value:.3g}"
    return f"{value:.4g} {unit}"


def summary_rows(records: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """One row per test and check; a test without budgets gets one row per variant."""
    rows = []
    for rec in records:
        test = rec["test"]
        flags = []
        if (rec.get("contention") or {}).get("contended"):
            flags.append("contended")
        if (rec.get("telemetry") or {}).get("throttled"):
            flags.append("throttled")
        for check in rec.get("checks", []):
            status = check["status"]
            if status == "inconclusive":
                status += " (pass)" if check["passed"] else " (fail)"
            interval = ""
            if check.get("low") is not None and check["low"] != check["high"]:
                interval = (f"[{format_value(check['low'], check['unit'])}, "
                            f"{format_value(check['high'], check['unit'])}]")
            rows.append([test, _check_name(check), check["variant"],
                         format_value(check.get("measured"), check["unit"]), interval,
                         _budget_text(check), status, " ".join(flags)])
        if not rec.get("checks"):
            for var in rec.get("results", []):
                rows.append([test, "median", var["variant"],
                             format_value(var["median_ms"], "ms"),
                             f"p95 {format_value(var['p95_ms'], 'ms')}", "-", "measured",
                             " ".join(flags)])
    return rows


def note_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """``test: name=value, ...`` for tests that noted derived figures."""
    lines = []
    for rec in records:
        notes = rec.get("notes") or {}
        if notes:
            text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in notes.items())
            lines.append(f"{rec['test']}: {text}")
    return lines


def _check_name(check: Mapping[str, Any]) -> str:
    kind = check["kind"]
    if kind == "speedup":
        return f"speedup vs {check['vs']}"
    if kind == "latency":
        return f"latency {check.get('metric', '').replace('_ms', '')}"
    if kind == "accuracy":
        return f"accuracy vs {check['vs']}"
    return kind.replace("_", " ")


def _budget_text(check: Mapping[str, Any]) -> str:
    budget = check.get("budget")
    if budget is None:
        return "-"
    kind = check["kind"]
    if kind == "accuracy":
        if check.get("metric") == "rel_l2_error":
            return f"rel L2 <= {budget:g}"
        return f"atol {budget:g}"
    sign = ">=" if kind in ("speedup", "throughput", "roofline") else "<="
    return f"{sign} {format_value(budget, check['unit'])}"


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


def document(records: Sequence[Mapping[str, Any]], environment: Mapping[str, Any],
             version: str) -> dict[str, Any]:
    """The ``--hwopt-json`` document: flat ``results`` and ``checks`` lists keyed by test."""
    results, checks, tests = [], [], []
    for rec in records:
        meta = {k: v for k, v in rec.items() if k not in ("results", "checks")}
        tests.append(meta)
        for var in rec.get("results", []):
            results.append({"test": rec["test"], **var})
        for check in rec.get("checks", []):
            checks.append({**check, "test": rec["test"]})
    return {"version": version, "format": JSON_VERSION, "environment": dict(environment),
            "tests": tests, "results": results, "checks": checks}


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename over it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, default=jsonable)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a report is not
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def jsonable(value: Any) -> Any:
    """What ``json.dump`` cannot write itself: sets and tuples as lists, paths as text."""
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)
