"""Aggregation of the verdict records: the markdown table, the report, the results file.

Percentiles are :func:`pytest_hwopt.core.stats.percentile` (linear
interpolation, the one the plugin reports with).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from benchmarks.verdicts.cpu import OUTSIDE_LIMIT
from benchmarks.verdicts.noise import NOISES
from benchmarks.verdicts.records import ResultsDoc, RunRecord
from benchmarks.verdicts.runs import TOOLS
from benchmarks.verdicts.workload import RIGHT, TRUE_RATIO, WORKLOADS, outside_band
from pytest_hwopt.core.stats import median, percentile

HEADER: Final = ("tool", "noise", "budget", "right verdict", "verdicts", "right", "wrong",
                 "inconclusive", "CI outside 2.55-3.45", "errors", "median s/verdict",
                 "p95 s/verdict", "measured ratio p5 / median / p95", "noise cores",
                 "outside cores (runs > 0.25)")


def _far(rec: RunRecord) -> bool:
    return outside_band(rec.get("low"), rec.get("high"))


def _cores(records: Sequence[RunRecord],
           key: Literal["noise_cores", "outside_cores"]) -> list[float]:
    out = []
    for r in records:
        cpu = r.get("cpu")
        value = cpu.get(key) if cpu else None
        if value is not None:
            out.append(value)
    return out


def summary(records: Sequence[RunRecord]) -> list[list[str]]:
    """One table row (cells as text, in :data:`HEADER` order) per (tool, noise, budget).

    Rows are ordered by tool, then noise (in their declared orders), then
    budget. Errors are left out of right/wrong, the inconclusive count and the
    ratio spread; wall times (s) and CPU figures (cores) cover every run. A
    cell is ``-`` where it does not apply or nothing was measured. Records
    need ``tool``, ``noise``, ``budget``, ``right`` and ``wall_s``.
    """
    keys: list[tuple[str, str, float]] = []
    for r in records:
        k = (r["tool"], r["noise"], r["budget"])
        if k not in keys:
            keys.append(k)
    order = {t: i for i, t in enumerate(TOOLS)}
    norder = {t: i for i, t in enumerate(NOISES)}
    keys.sort(key=lambda k: (order.get(k[0], 9), norder.get(k[1], 9), k[2]))
    rows = []
    for tool, noise, budget in keys:
        rs = [r for r in records if (r["tool"], r["noise"], r["budget"]) == (tool, noise, budget)]
        ok = [r for r in rs if "error" not in r]
        right = sum(1 for r in ok if r["right"])
        hwopt = tool == "hwopt"
        incon = str(sum(1 for r in ok if r.get("status") == "inconclusive")) if hwopt else "-"
        walls = [r["wall_s"] for r in rs]
        ratios = [m for m in (r.get("measured") for r in ok) if m is not None]
        ratio_text = (f"{percentile(ratios, 5):.2f} / {median(ratios):.2f} / "
                      f"{percentile(ratios, 95):.2f}" if ratios else "-")
        noise_c = _cores(rs, "noise_cores")
        outside = _cores(rs, "outside_cores")
        outside_text = (f"{median(outside):.2f} ({sum(1 for x in outside if x > OUTSIDE_LIMIT)})"
                        if outside else "-")
        rows.append([tool, noise, f"{budget:g}", "pass" if RIGHT[budget] else "fail",
                     str(len(rs)), str(right), str(len(ok) - right), incon,
                     str(sum(1 for r in ok if _far(r))) if hwopt else "-",
                     str(len(rs) - len(ok)), f"{median(walls):.2f}",
                     f"{percentile(walls, 95):.2f}", ratio_text,
                     f"{median(noise_c):.2f}" if noise_c else "-", outside_text])
    return rows


def markdown(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    """A markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def wrong_lines(records: Sequence[RunRecord]) -> list[str]:
    """One markdown bullet per pytest-hwopt verdict that was wrong, failed, or far off.

    Each says what it saw: interval, rounds, the spread of per-round ratios,
    medians (ms), the plugin's contention and the outside load (cores).
    """
    out = []
    for r in records:
        if r["tool"] != "hwopt" or (r["right"] and not _far(r)):
            continue
        if "error" in r:
            out.append(f"- {r['noise']} min={r['budget']} rep {r['rep']}: error: {r['error']}")
            continue
        rounds = r.get("rounds_ms") or {}
        per_round = [s / f for s, f in zip(rounds.get("slow", []), rounds.get("fast", []))
                     if f > 0]
        spread = (f"per-round ratios {min(per_round):.2f}-{max(per_round):.2f}"
                  if per_round else "")
        med = r.get("median_ms") or {}
        cont: dict[str, float | bool | None] = r.get("contention") or {}
        cpu = r.get("cpu")
        outside = (cpu.get("outside_cores") if cpu else None) or 0
        out.append(
            f"- {'wrong' if not r['right'] else 'right, but far'}: "
            f"{r['noise']} min={r['budget']} rep {r['rep']}: {r['measured']:.2f}x "
            f"[{r['low']:.2f}, {r['high']:.2f}] {r['status']} after {r['rounds']} rounds "
            f"({r['stopped']}); {spread}; median fast {med.get('fast', math.nan):.3f} ms, "
            f"slow {med.get('slow', math.nan):.3f} ms; hwopt contention "
            f"{cont.get('other_busy_cores', math.nan):.2f} cores; outside load "
            f"{outside:.2f} cores")
    return out


def report(doc: ResultsDoc) -> str:
    """The whole text report of a results document: header lines, table, wrong verdicts."""
    m = doc["machine"]
    cal = doc["calibration"]
    q = cal.get("quiet_ratio") or {}
    snap = doc.get("plugin") or {}
    parts = [
        f"date: {doc['started']}  (finished {doc.get('finished', 'not finished')}, "
        f"{doc.get('total_s', math.nan) / 60:.1f} min)",
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}), CPU: {m['cpu_model']}, "
        f"{m['platform']}, Python {m['python']}",
        f"versions: {', '.join(f'{k} {v}' for k, v in doc.get('versions', {}).items())}",
        f"pytest-hwopt code: {snap.get('mode', '?')} {snap.get('source', '')} "
        f"sha256 {str(snap.get('sha256', '?'))[:16]}",
        f"command: {doc['command']}",
        f"workload: fast = work(n), slow = {WORKLOADS[cal.get('workload', '3n')]}, "
        f"n={cal['n']} (true speedup {TRUE_RATIO}); in-process check at start: fast "
        f"{q.get('fast_ms', math.nan):.3f} ms, slow {q.get('slow_ms', math.nan):.3f} ms, "
        f"ratio of medians {q.get('ratio_of_medians', math.nan):.3f}",
        "",
        markdown(summary(doc["runs"])),
    ]
    wrong = wrong_lines(doc["runs"])
    if wrong:
        parts += ["", "pytest-hwopt verdicts that were wrong, failed, or whose interval lies "
                  "wholly outside 2.55-3.45:", *wrong]
    return "\n".join(parts)


def write_results(path: Path, doc: ResultsDoc) -> None:
    """Write ``doc`` as compact JSON to ``path`` atomically (a temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def read_results(path: Path) -> ResultsDoc:
    """A results document written by :func:`write_results` (not validated)."""
    doc: ResultsDoc = json.loads(path.read_text())
    return doc
