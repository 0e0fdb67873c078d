"""The suite-flake benchmark's pure part: check keys, status changes, counts, the report.

Nothing here starts a process.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the repository root is not on sys.path under every runner
    sys.path.insert(0, str(ROOT))

from benchmarks.suite_flake.changes import (  # noqa: E402
    Change,
    FlakeCounts,
    changes,
    check_key,
    count,
    statuses,
)
from benchmarks.suite_flake.cli import build_parser, report, table  # noqa: E402


def check(test: str, kind: str, status: str, variant: str = "ort", vs: str | None = "eager",
          metric: str = "ratio") -> dict[str, object]:
    return {"test": test, "kind": kind, "metric": metric, "variant": variant, "vs": vs,
            "status": status}


def test_check_key() -> None:
    assert check_key(check("t.py::a", "speedup", "passed")) == (
        "t.py::a::speedup[ratio] ort vs eager")
    assert check_key(check("t.py::a", "latency", "passed", vs=None, metric="p95_ms")) == (
        "t.py::a::latency[p95_ms] ort")
    assert check_key({}) == "::[] "


def test_statuses_keys_repeated_checks_apart() -> None:
    doc = {"checks": [check("t::a", "speedup", "passed"), check("t::a", "speedup", "failed"),
                      check("t::a", "latency", "passed", metric="p50_ms")]}
    assert statuses(doc) == {"t::a::speedup[ratio] ort vs eager": "passed",
                             "t::a::speedup[ratio] ort vs eager#2": "failed",
                             "t::a::latency[p50_ms] ort vs eager": "passed"}
    with pytest.raises(ValueError, match="no 'checks' list"):
        statuses({"tests": []})
    with pytest.raises(ValueError, match="not an object"):
        statuses({"checks": ["x"]})


def test_changes_and_flips() -> None:
    runs = [{"a": "passed", "b": "passed", "c": "passed", "d": "skipped"},
            {"a": "passed", "b": "inconclusive", "c": "failed", "d": "skipped"},
            {"a": "passed", "b": "passed", "c": "passed"}]
    moved = changes(runs)
    assert moved == [Change("b", ("passed", "inconclusive", "passed")),
                     Change("c", ("passed", "failed", "passed")),
                     Change("d", ("skipped", "skipped", "absent"))]
    assert [c.flipped for c in moved] == [False, True, False]
    assert count(runs) == FlakeCounts(runs=3, checks=4, changed=3, flipped=1, inconclusive=1)


def test_one_run_changes_nothing() -> None:
    assert changes([{"a": "failed"}]) == [] and changes([]) == []
    assert count([{"a": "inconclusive"}]) == FlakeCounts(1, 1, 0, 0, 1)


def doc(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"started": "2026-01-01T00:00:00+00:00", "command": "python -m benchmarks.suite_flake",
            "machine": {"nproc": 2, "cpu_model": "cpu", "platform": "linux", "python": "3.11"},
            "plugin": {"mode": "live", "source": "/x", "sha256": "ab" * 32},
            "noise": ["quiet", "bursty"], "runs": runs}


def run(noise: str, i: int, found: dict[str, str], code: int | None = 0,
        error: str | None = None) -> dict[str, Any]:
    return {"noise": noise, "run": i, "exit_code": code, "wall_s": 60.0 + i,
            "cpu": {"run_cores": 1.0, "noise_cores": 0.5, "outside_cores": 0.1},
            "statuses": found, "error": error}


def test_table_and_report() -> None:
    d = doc([run("quiet", 0, {"a": "passed"}), run("quiet", 1, {"a": "passed"}),
             run("bursty", 0, {"a": "passed", "b": "passed"}),
             run("bursty", 1, {"a": "failed", "b": "inconclusive"}, code=1),
             run("bursty", 2, {}, code=None, error="timed out")])
    lines = table(d).splitlines()
    assert lines[2] == "| quiet | 2 | 1 | 0 | 0 | 0 | 0,0 | 0 | 60.5 | 0.50 | 0.10 |"
    assert lines[3] == "| bursty | 3 | 2 | 2 | 1 | 1 | 0,1,None | 1 | 61.0 | 0.50 | 0.10 |"
    text = report(d)
    assert "- FLIP a: passed / failed" in text
    assert "- b: passed / inconclusive" in text
    assert "- bursty run 2: error: timed out" in text


def test_options() -> None:
    args = build_parser().parse_args(["--runs", "5", "--noise", "quiet,bursty"])
    assert (args.runs, args.noise, args.paths) == (5, "quiet,bursty", "suites")
