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
from benchmarks.verdicts.noise import ALIASES, NOISES
from benchmarks.verdicts.outcomes import outcome_of
from benchmarks.verdicts.records import ResultsDoc, RunRecord
from benchmarks.verdicts.runs import TOOLS
from benchmarks.verdicts.workload import (
    ALL_WORKLOADS,
    BUDGETS,
    MODEL_WORKLOADS,
    RIGHT,
    TRUE_RATIO,
    WORKLOADS,
    outside_band,
)
from pytest_hwopt.core.stats import median, percentile

HEADER: Final = ("workload", "tool", "noise", "budget", "right verdict", "verdicts", "right",
                 "wrong", "inconclusive", "CI outside the budgets", "errors",
                 "median s/verdict", "median s/clear verdict", "p95 s/verdict",
                 "median s over bare pytest (bare s)",
                 "measured ratio p5 / median / p95", "noise cores",
                 "outside cores (runs > 0.25)")


def _workload(rec: RunRecord) -> str:
    return rec.get("workload", "3n")  # records written before the model pair: synthetic


def _expected(rec: RunRecord) -> bool:
    if "expected" in rec:
        return rec["expected"] == "pass"
    return RIGHT[rec["budget"]]


def bands(records: Sequence[RunRecord]) -> dict[str, tuple[float, float]]:
    """Per workload, the lowest and highest budget its records judged (the band around the
    truth); the synthetic budgets for a workload without records."""
    out: dict[str, tuple[float, float]] = {}
    for r in records:
        w, b = _workload(r), r["budget"]
        lo, hi = out.get(w, (b, b))
        out[w] = (min(lo, b), max(hi, b))
    return out


def _far(rec: RunRecord, band: tuple[float, float] = BUDGETS) -> bool:
    return outside_band(rec.get("low"), rec.get("high"), band)


def _cores(records: Sequence[RunRecord],
           key: Literal["noise_cores", "outside_cores"]) -> list[float]:
    out = []
    for r in records:
        cpu = r.get("cpu")
        value = cpu.get(key) if cpu else None
        if value is not None:
            out.append(value)
    return out


def _over_bare(records: Sequence[RunRecord]) -> str:
    """Median of (verdict wall - bare pytest wall beside it), and the bare runs' median (s)."""
    pairs = [(r["wall_s"], bare) for r in records
             if (bare := r.get("bare_wall_s")) is not None]
    if not pairs:
        return "-"
    return (f"{median([w - b for w, b in pairs]):.2f} "
            f"({median([b for _, b in pairs]):.2f})")


def summary(records: Sequence[RunRecord]) -> list[list[str]]:
    """One table row (cells as text, in :data:`HEADER` order) per (workload, tool, noise, budget).

    Rows are ordered by workload, tool, then noise (in their declared orders),
    then budget. Outcomes come from ``outcomes.outcome_of``: right, wrong
    (a pass or fail contrary to the truth), inconclusive (pytest-hwopt's check
    status; pytest-benchmark always decides) and errors. Errors are left out
    of the ratio spread; wall times (s) and CPU figures (cores) cover every
    run; a *clear* verdict is a right or wrong one; "over bare pytest" is the
    median of each verdict's wall time less the bare one-test pytest run beside
    it (``bare_wall_s``). A cell is ``-`` where it
    does not apply or nothing was measured. Records need ``tool``, ``noise``,
    ``budget``, ``wall_s`` and ``outcome`` (or, written before it, ``right``).
    """
    keys: list[tuple[str, str, str, float]] = []
    for r in records:
        k = (_workload(r), r["tool"], r["noise"], r["budget"])
        if k not in keys:
            keys.append(k)
    worder = {w: i for i, w in enumerate(ALL_WORKLOADS)}
    order = {t: i for i, t in enumerate(TOOLS)}
    norder = {t: i for i, t in enumerate(NOISES)}
    keys.sort(key=lambda k: (worder.get(k[0], 9), order.get(k[1], 9),
                             norder.get(ALIASES.get(k[2], k[2]), 9), k[3]))
    band = bands(records)
    rows = []
    for workload, tool, noise, budget in keys:
        rs = [r for r in records
              if (_workload(r), r["tool"], r["noise"], r["budget"]) == (workload, tool, noise,
                                                                        budget)]
        outcomes = [outcome_of(r) for r in rs]
        ok = [r for r, o in zip(rs, outcomes) if o != "error"]
        right = outcomes.count("right")
        wrong = outcomes.count("wrong")
        hwopt = tool == "hwopt"
        incon = str(outcomes.count("inconclusive")) if hwopt else "-"
        walls = [r["wall_s"] for r in rs]
        clear = [r["wall_s"] for r, o in zip(rs, outcomes) if o in ("right", "wrong")]
        ratios = [m for m in (r.get("measured") for r in ok) if m is not None]
        ratio_text = (f"{percentile(ratios, 5):.2f} / {median(ratios):.2f} / "
                      f"{percentile(ratios, 95):.2f}" if ratios else "-")
        noise_c = _cores(rs, "noise_cores")
        outside = _cores(rs, "outside_cores")
        outside_text = (f"{median(outside):.2f} ({sum(1 for x in outside if x > OUTSIDE_LIMIT)})"
                        if outside else "-")
        rows.append([workload, tool, noise, f"{budget:g}",
                     "pass" if _expected(rs[0]) else "fail",
                     str(len(rs)), str(right), str(wrong), incon,
                     str(sum(1 for r in ok if _far(r, band[workload]))) if hwopt else "-",
                     str(outcomes.count("error")), f"{median(walls):.2f}",
                     f"{median(clear):.2f}" if clear else "-",
                     f"{percentile(walls, 95):.2f}", _over_bare(rs), ratio_text,
                     f"{median(noise_c):.2f}" if noise_c else "-", outside_text])
    return rows


def markdown(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    """A markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _num(x: object) -> float:
    return float(x) if isinstance(x, (int, float)) else math.nan


def wrong_lines(records: Sequence[RunRecord]) -> list[str]:
    """One markdown bullet per pytest-hwopt verdict that was wrong, inconclusive, an error, or
    right but with an interval wholly outside its workload's budgets.

    Each says what it saw: interval, rounds, the spread of per-round ratios,
    medians (ms), the plugin's contention and the outside load (cores).
    """
    out = []
    band = bands(records)
    for r in records:
        outcome = outcome_of(r)
        far = _far(r, band[_workload(r)])
        if r["tool"] != "hwopt" or (outcome == "right" and not far):
            continue
        where = f"{_workload(r)} {r['noise']} min={r['budget']} rep {r['rep']}"
        if outcome == "error":
            out.append(f"- error: {where}: {r.get('error')}")
            continue
        base, cand = r.get("baseline", "slow"), r.get("candidate", "fast")
        rounds = r.get("rounds_ms") or {}
        per_round = [s / f for s, f in zip(rounds.get(base, []), rounds.get(cand, [])) if f > 0]
        spread = (f"per-round ratios {min(per_round):.2f}-{max(per_round):.2f}"
                  if per_round else "")
        med = r.get("median_ms") or {}
        cont: dict[str, float | bool | None] = r.get("contention") or {}
        cpu = r.get("cpu")
        outside = (cpu.get("outside_cores") if cpu else None) or 0
        label = "right, but far" if outcome == "right" else outcome
        out.append(
            f"- {label}: {where}: {_num(r.get('measured')):.2f}x "
            f"[{_num(r.get('low')):.2f}, {_num(r.get('high')):.2f}] {r.get('status')} after "
            f"{r.get('rounds')} rounds ({r.get('stopped')}); {spread}; median {cand} "
            f"{med.get(cand, math.nan):.3f} ms, {base} {med.get(base, math.nan):.3f} ms; "
            f"hwopt contention {_num(cont.get('other_busy_cores')):.2f} cores; outside load "
            f"{outside:.2f} cores")
    return out


def workload_line(doc: ResultsDoc) -> str:
    """What the pair was and what its truth is, from the document's ``calibration``."""
    cal = doc["calibration"]
    name = cal.get("workload", "3n")
    if name in MODEL_WORKLOADS:
        t = cal.get("truth_runs")
        spread = (f"median of {len(t['ratios'])} fresh quiet processes, p5-p95 "
                  f"{t['p5']:.3f}-{t['p95']:.3f}, {t['wall_s']:.0f} s" if t else "given")
        return (f"workload: {name} ({MODEL_WORKLOADS[name]}), {cal.get('threads')} threads; "
                f"true ratio {cal.get('truth', math.nan):.3f} ({spread}); budgets "
                f"{', '.join(f'{b:g}' for b in cal.get('budgets', []))}")
    q = cal.get("quiet_ratio")
    fast, slow, ratio = ((q["fast_ms"], q["slow_ms"], q["ratio_of_medians"]) if q
                         else (math.nan, math.nan, math.nan))
    return (f"workload: fast = work(n), slow = {WORKLOADS.get(name, name)}, "
            f"n={cal.get('n')} (true speedup {cal.get('truth', TRUE_RATIO)}); in-process check "
            f"at start: fast {fast:.3f} ms, slow {slow:.3f} ms, ratio of medians {ratio:.3f}")


def report(doc: ResultsDoc) -> str:
    """The whole text report of a results document: header lines, table, wrong verdicts."""
    m = doc["machine"]
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
        workload_line(doc),
        "",
        markdown(summary(doc["runs"])),
    ]
    wrong = wrong_lines(doc["runs"])
    if wrong:
        parts += ["", "pytest-hwopt verdicts that were wrong, inconclusive or errors, or whose "
                  "interval lies wholly outside the budgets:", *wrong]
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
