"""The verdict benchmark's pure parts: reading a run's outcome, the summary, the options.

Nothing here starts a process; ``benchmarks/`` is imported from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the repository root is not on sys.path under every runner
    sys.path.insert(0, str(ROOT))

from benchmarks.verdicts.cli import parse_repetitions, schedule  # noqa: E402
from benchmarks.verdicts.records import CpuSplit, ResultsDoc, RunRecord  # noqa: E402
from benchmarks.verdicts.runs import (  # noqa: E402
    PytestRun,
    benchmark_records,
    hwopt_record,
    worth_keeping,
)
from benchmarks.verdicts.summary import (  # noqa: E402
    HEADER,
    markdown,
    read_results,
    report,
    summary,
    write_results,
    wrong_lines,
)
from benchmarks.verdicts.workload import (  # noqa: E402
    BENCHMARK_TEST,
    HWOPT_TEST,
    outside_band,
    render_test_file,
    work,
)
from pytest_hwopt.core.stats import median, percentile  # noqa: E402

CPU: CpuSplit = {"run_cores": 1.0, "noise_cores": 0.0, "outside_cores": 0.1}


def hwopt_doc(passed: bool, measured: float = 3.0, low: float = 2.9, high: float = 3.1,
              status: str | None = None) -> dict[str, object]:
    """A minimal ``--hwopt-json`` document of one speedup check."""
    return {
        "checks": [{"passed": passed, "status": status or ("passed" if passed else "failed"),
                    "measured": measured, "low": low, "high": high, "message": "m"}],
        "tests": [{"rounds": 8, "stopped": "decided", "elapsed_s": 0.2,
                   "contention": {"other_busy_cores": 0.5, "contended": False}}],
        "results": [
            {"variant": "slow", "median_ms": 0.9, "calls_per_sample": 1,
             "rounds_ms": [0.9, 1.0]},
            {"variant": "fast", "median_ms": 0.3, "calls_per_sample": 1,
             "rounds_ms": [0.3, 0.25]},
        ],
    }


def pb_doc(slow_s: float = 0.9e-3, fast_s: float = 0.3e-3) -> dict[str, object]:
    """A minimal ``--benchmark-json`` document of the two benchmark tests."""
    def stats(median_s: float) -> dict[str, float | int]:
        return {"median": median_s, "iqr": median_s / 10, "rounds": 100, "iterations": 1}
    return {"benchmarks": [{"name": "test_slow", "stats": stats(slow_s)},
                           {"name": "test_fast", "stats": stats(fast_s)}]}


def run(doc: object, code: int | None = 0, error: Exception | None = None) -> PytestRun:
    return PytestRun(exit_code=code, wall_s=0.7, output_tail="tail", cpu=CPU, doc=doc,
                     doc_error=error)


# ----------------------------------------------------------------- a hwopt run's outcome

def test_hwopt_record_right_pass_and_right_fail() -> None:
    passing = hwopt_record(run(hwopt_doc(True), code=0), 2.55)
    assert passing["right"] is True and passing["passed"] is True
    assert passing["median_ms"] == {"slow": 0.9, "fast": 0.3}
    assert passing["rounds_ms"]["fast"] == [0.3, 0.25]
    assert passing["rounds"] == 8 and passing["contention"] == {
        "other_busy_cores": 0.5, "contended": False}
    assert "error" not in passing and "output_tail" not in passing
    failing = hwopt_record(run(hwopt_doc(False), code=1), 3.45)
    assert failing["right"] is True and failing["passed"] is False


def test_hwopt_record_wrong_verdict_is_not_an_error() -> None:
    rec = hwopt_record(run(hwopt_doc(True, measured=3.6, low=3.5, high=3.7), code=0), 3.45)
    assert rec["right"] is False and "error" not in rec
    assert worth_keeping(rec)


def test_hwopt_record_exit_code_must_agree() -> None:
    rec = hwopt_record(run(hwopt_doc(True), code=1), 2.55)
    assert rec["error"] == "exit code 1 disagrees with status=passed, passed=True"
    assert rec["right"] is False and rec["output_tail"] == "tail"
    assert rec["outcome"] == "error"
    assert hwopt_record(run(hwopt_doc(False), code=2), 3.45)["error"].startswith("exit code 2")


@pytest.mark.parametrize("code", [0, 1])
@pytest.mark.parametrize("point_passed", [True, False])
def test_hwopt_record_inconclusive_from_the_status_not_the_exit_code(
        code: int, point_passed: bool) -> None:
    # inconclusive is a warning by default (exit 0) and a failure under --hwopt-strict (exit 1);
    # either way it is neither right nor wrong, whatever its point estimate
    doc = hwopt_doc(point_passed, measured=3.4, low=2.9, high=3.9, status="inconclusive")
    rec = hwopt_record(run(doc, code=code), 3.45)
    assert "error" not in rec
    assert rec["outcome"] == "inconclusive" and rec["right"] is False
    assert rec["expected"] == "fail" and rec["truth"] == 3.0
    assert worth_keeping(rec)


def test_hwopt_record_reads_the_speedup_check_beside_an_accuracy_check() -> None:
    doc = hwopt_doc(True, measured=1.7, low=1.6, high=1.8)
    checks = doc["checks"]
    assert isinstance(checks, list)
    checks[0].update({"kind": "speedup", "variant": "onnxruntime", "vs": "pytorch"})
    checks.insert(0, {"kind": "accuracy", "passed": True, "status": "passed",
                      "measured": 1e-6, "low": None, "high": None, "variant": "onnxruntime"})
    rec = hwopt_record(run(doc, code=0), 1.41, truth=1.66)
    assert rec["measured"] == 1.7 and rec["outcome"] == "right" and rec["expected"] == "pass"
    assert (rec["baseline"], rec["candidate"]) == ("pytorch", "onnxruntime")
    wrong = hwopt_record(run(doc, code=0), 1.91, truth=1.66)
    assert wrong["outcome"] == "wrong" and wrong["expected"] == "fail"


def test_hwopt_record_without_json() -> None:
    timed_out = hwopt_record(run(None, code=None, error=FileNotFoundError("x")), 2.55)
    assert timed_out["error"] == "no JSON (timed out)"
    assert timed_out["right"] is False and timed_out["exit_code"] is None
    missing = hwopt_record(run(None, code=4, error=FileNotFoundError("x")), 2.55)
    assert missing["error"] == "no JSON (FileNotFoundError)"
    assert missing["output_tail"] == "tail"


def test_hwopt_record_unexpected_json() -> None:
    rec = hwopt_record(run({"checks": []}, code=0), 2.55)
    assert rec["error"].startswith("unexpected JSON: IndexError")
    assert rec["right"] is False


def test_worth_keeping_far_interval_even_when_right() -> None:
    far = hwopt_record(run(hwopt_doc(True, measured=7.0, low=6.8, high=7.2), code=0), 2.55)
    assert far["right"] is True and worth_keeping(far)
    assert not worth_keeping(hwopt_record(run(hwopt_doc(True), code=0), 2.55))


def test_outside_band() -> None:
    assert outside_band(3.5, 4.0) and outside_band(2.0, 2.5)
    assert not outside_band(2.5, 3.5) and not outside_band(3.0, 3.45)
    assert not outside_band(None, 4.0) and not outside_band(3.5, None)


# ----------------------------------------------------------- a pytest-benchmark run's outcome

def test_benchmark_records_one_verdict_per_budget() -> None:
    recs = benchmark_records(run(pb_doc(slow_s=0.96e-3, fast_s=0.3e-3), code=0))
    assert [r["budget"] for r in recs] == [2.55, 3.45]
    assert all(r["measured"] == pytest.approx(3.2) for r in recs)
    assert [r["passed"] for r in recs] == [True, False]
    assert [r["right"] for r in recs] == [True, True]
    assert [r["outcome"] for r in recs] == ["right", "right"]
    assert [r["expected"] for r in recs] == ["pass", "fail"]
    assert recs[0]["median_ms"] == {"slow": pytest.approx(0.96), "fast": pytest.approx(0.3)}
    assert recs[0]["rounds"] == {"slow": 100, "fast": 100}
    # a ratio above the upper budget: a false pass of 3.45
    high = benchmark_records(run(pb_doc(slow_s=1.05e-3, fast_s=0.3e-3), code=0))
    assert [r["right"] for r in high] == [True, False]
    assert [r["outcome"] for r in high] == ["right", "wrong"]
    # budgets around a measured truth (the model pair)
    around = benchmark_records(run(pb_doc(slow_s=1.0e-3, fast_s=0.5e-3), code=0),
                               budgets=(1.41, 1.91), truth=1.66)
    assert [(r["budget"], r["expected"], r["outcome"]) for r in around] == [
        (1.41, "pass", "right"), (1.91, "fail", "wrong")]


def test_benchmark_records_errors() -> None:
    failed = benchmark_records(run(pb_doc(), code=1))
    assert all(r["error"] == "pytest exit code 1" and r["right"] is False for r in failed)
    assert all(r["outcome"] == "error" for r in failed)
    assert all("passed" not in r and r["output_tail"] == "tail" for r in failed)
    timed_out = benchmark_records(run(None, code=None, error=FileNotFoundError("gone")))
    assert [r["error"] for r in timed_out] == ["timed out", "timed out"]
    missing = benchmark_records(run(None, code=0, error=FileNotFoundError("gone")))
    assert missing[0]["error"] == "no usable JSON: FileNotFoundError: gone"
    zero = benchmark_records(run(pb_doc(fast_s=0.0), code=0))
    assert zero[0]["error"].startswith("no usable JSON: ZeroDivisionError")
    absent = benchmark_records(run({"benchmarks": []}, code=0))
    assert absent[1]["error"] == "no usable JSON: KeyError: 'test_slow'"


# -------------------------------------------------------------------------- summary

def rec(tool: str, noise: str, budget: float, right: bool, wall: float,
        measured: float | None = 3.0, error: str | None = None, **extra: object) -> RunRecord:
    r: RunRecord = {"tool": tool, "noise": noise, "budget": budget, "right": right,
                    "wall_s": wall, "measured": measured, "rep": 0,
                    "cpu": {"run_cores": 1.0, "noise_cores": 0.5, "outside_cores": wall / 10}}
    if error is not None:
        r["error"] = error
    r.update(extra)  # type: ignore[typeddict-item]
    return r


def test_summary_counts_and_order() -> None:
    records = [
        rec("pytest-benchmark", "quiet", 3.45, False, 2.0, measured=3.6),
        rec("hwopt", "busy", 2.55, True, 1.0),
        rec("hwopt", "quiet", 3.45, True, 0.5, status="failed"),
        rec("hwopt", "quiet", 3.45, False, 0.7, status="inconclusive", measured=3.5),
        rec("hwopt", "quiet", 3.45, False, 9.0, measured=None, error="no JSON (timed out)"),
        rec("hwopt", "quiet", 2.55, True, 0.6, low=3.5, high=3.6, measured=3.55),
    ]
    rows = summary(records)
    # written before the model pair: no workload key, read as the synthetic "3n"; the earlier
    # noise name "busy" sorts as "steady"
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("3n", "hwopt", "quiet", "2.55"), ("3n", "hwopt", "quiet", "3.45"),
        ("3n", "hwopt", "busy", "2.55"), ("3n", "pytest-benchmark", "quiet", "3.45")]
    assert all(len(r) == len(HEADER) for r in rows)
    quiet_fail = dict(zip(HEADER, rows[1]))
    assert quiet_fail["right verdict"] == "fail"
    # the inconclusive verdict is neither right nor wrong
    assert (quiet_fail["verdicts"], quiet_fail["right"], quiet_fail["wrong"],
            quiet_fail["inconclusive"], quiet_fail["errors"]) == ("3", "1", "0", "1", "1")
    walls = [0.5, 0.7, 9.0]  # errors count in the time per verdict
    assert quiet_fail["median s/verdict"] == f"{median(walls):.2f}"
    assert quiet_fail["median s/clear verdict"] == "0.50"  # only the decided one
    assert quiet_fail["p95 s/verdict"] == f"{percentile(walls, 95):.2f}"
    ratios = [3.0, 3.5]  # but not in the ratio spread
    assert quiet_fail["measured ratio p5 / median / p95"] == (
        f"{percentile(ratios, 5):.2f} / {median(ratios):.2f} / {percentile(ratios, 95):.2f}")
    assert quiet_fail["noise cores"] == "0.50"
    assert quiet_fail["outside cores (runs > 0.25)"] == f"{median([0.05, 0.07, 0.9]):.2f} (1)"
    assert dict(zip(HEADER, rows[0]))["CI outside the budgets"] == "1"
    pb = dict(zip(HEADER, rows[3]))
    assert (pb["inconclusive"], pb["CI outside the budgets"], pb["wrong"]) == ("-", "-", "1")


def test_summary_of_two_workloads_uses_each_ones_budgets() -> None:
    records = [
        rec("hwopt", "crowded", 1.91, False, 4.0, measured=1.7, low=1.6, high=1.8,
            status="inconclusive", outcome="inconclusive", expected="fail",
            workload="ort-mlp", truth=1.66),
        rec("hwopt", "crowded", 1.41, True, 3.0, measured=2.1, low=2.0, high=2.2,
            status="passed", outcome="right", expected="pass", workload="ort-mlp", truth=1.66),
        rec("hwopt", "quiet", 2.55, True, 0.6, outcome="right", expected="pass",
            workload="3n"),
    ]
    rows = [dict(zip(HEADER, r)) for r in summary(records)]
    assert [(r["workload"], r["noise"], r["budget"]) for r in rows] == [
        ("3n", "quiet", "2.55"), ("ort-mlp", "crowded", "1.41"), ("ort-mlp", "crowded", "1.91")]
    assert rows[2]["right verdict"] == "fail" and rows[2]["inconclusive"] == "1"
    assert rows[2]["median s/clear verdict"] == "-"
    # 2.0-2.2 lies wholly above the model pair's band 1.41-1.91 (not the synthetic 2.55-3.45)
    assert rows[1]["CI outside the budgets"] == "1"


def test_summary_without_cpu_figures() -> None:
    r = rec("hwopt", "quiet", 2.55, True, 1.0)
    r["cpu"] = {"run_cores": None, "noise_cores": None, "outside_cores": None}
    row = dict(zip(HEADER, summary([r])[0]))
    assert row["noise cores"] == "-" and row["outside cores (runs > 0.25)"] == "-"


def test_seconds_over_a_bare_pytest_run_beside_each_verdict() -> None:
    # the host's speed drifts; each verdict is read against the bare run timed beside it
    a, b, c = (rec("hwopt", "quiet", 2.55, True, w) for w in (1.0, 1.5, 1.2))
    a["bare_wall_s"], b["bare_wall_s"], c["bare_wall_s"] = 0.5, 1.0, None
    row = dict(zip(HEADER, summary([a, b, c])[0]))
    assert row["median s over bare pytest (bare s)"] == "0.50 (0.75)"
    assert dict(zip(HEADER, summary([c])[0]))["median s over bare pytest (bare s)"] == "-"


def test_markdown_table() -> None:
    assert markdown([["1", "2"]], header=("a", "b")) == "| a | b |\n|---|---|\n| 1 | 2 |"


def test_wrong_lines_lists_wrong_far_and_errors_of_hwopt_only() -> None:
    records = [
        rec("hwopt", "busy", 3.45, False, 1.0, measured=3.6, low=3.5, high=3.7,
            status="passed", rounds=8, stopped="decided",
            rounds_ms={"slow": [1.0, 1.2], "fast": [0.3, 0.3]},
            median_ms={"slow": 1.1, "fast": 0.3}, contention={"other_busy_cores": 1.5}),
        rec("hwopt", "quiet", 2.55, False, 1.0, error="no JSON (timed out)", rep=3),
        rec("hwopt", "quiet", 2.55, True, 1.0),
        rec("pytest-benchmark", "quiet", 3.45, False, 1.0),
    ]
    lines = wrong_lines(records)
    assert len(lines) == 2
    assert lines[0].startswith("- wrong: 3n busy min=3.45 rep 0: 3.60x [3.50, 3.70] passed")
    assert "per-round ratios 3.33-4.00" in lines[0]
    assert "median fast 0.300 ms, slow 1.100 ms" in lines[0]
    assert "hwopt contention 1.50 cores; outside load 0.10 cores" in lines[0]
    assert lines[1] == "- error: 3n quiet min=2.55 rep 3: no JSON (timed out)"


def test_wrong_lines_name_the_model_pairs_variants() -> None:
    r = rec("hwopt", "steady", 1.41, False, 1.0, measured=1.6, low=1.2, high=2.0,
            status="inconclusive", outcome="inconclusive", workload="ort-mlp",
            baseline="pytorch", candidate="onnxruntime",
            rounds_ms={"pytorch": [1.0, 2.0], "onnxruntime": [0.5, 0.5]},
            median_ms={"pytorch": 1.5, "onnxruntime": 0.5})
    (line,) = wrong_lines([r])
    assert line.startswith("- inconclusive: ort-mlp steady min=1.41 rep 0: 1.60x [1.20, 2.00]")
    assert "per-round ratios 2.00-4.00" in line
    assert "median onnxruntime 0.500 ms, pytorch 1.500 ms" in line


def minimal_doc(runs: list[RunRecord]) -> ResultsDoc:
    return {
        "started": "2026-01-01T00:00:00+00:00", "command": "python -m benchmarks.verdicts",
        "machine": {"nproc": 2, "cpu_count": 2, "cpu_model": "cpu", "platform": "linux",
                    "python": "3.11", "loadavg_at_start": None},
        "versions": {"pytest": "9"},
        "plugin": {"mode": "live", "source": "/x", "sha256": "ab" * 32},
        "calibration": {"n": 1000, "workload": "3n", "fast_target_ms": 0.3,
                        "quiet_ratio": {"fast_ms": 0.3, "slow_ms": 0.9,
                                        "ratio_of_medians": 3.0, "ratio_of_minima": 3.0}},
        "runs": runs,
    }


def test_report_and_results_file_round_trip(tmp_path: Path) -> None:
    doc = minimal_doc([rec("hwopt", "quiet", 2.55, True, 0.6)])
    path = tmp_path / "sub" / "results.json"
    write_results(path, doc)
    assert not list(path.parent.glob(".*.tmp"))
    again = read_results(path)
    assert again == doc
    text = report(again)
    assert "finished not finished" in text
    assert "| 3n | hwopt | quiet | 2.55 | pass | 1 | 1 | 0 | 0 | 0 | 0 | 0.60 | 0.60 |" in text
    assert "wholly outside" not in text


# ------------------------------------------------------------------ options and workload

def test_parse_repetitions() -> None:
    tools = ["hwopt", "pytest-benchmark"]
    assert parse_repetitions("3", tools) == {"hwopt": 3, "pytest-benchmark": 3}
    assert parse_repetitions("hwopt=5", tools) == {"hwopt": 5, "pytest-benchmark": 0}
    assert parse_repetitions("hwopt=5,pytest-benchmark=2", ["hwopt"]) == {"hwopt": 5}
    with pytest.raises(SystemExit, match="unknown tool 'timeit'"):
        parse_repetitions("timeit=3", tools)
    with pytest.raises(SystemExit, match="--repetitions"):
        parse_repetitions("many", tools)


def test_schedule_interleaves_tools() -> None:
    order = list(schedule({"hwopt": 3, "pytest-benchmark": 1}, ["hwopt", "pytest-benchmark"]))
    assert order == [(0, "hwopt"), (0, "pytest-benchmark"), (1, "hwopt"), (2, "hwopt")]
    assert list(schedule({}, [])) == []


@pytest.mark.parametrize("workload", ["3n", "repeat"])
def test_test_files_compile_and_work_matches(workload: str) -> None:
    for source in (render_test_file(HWOPT_TEST, 1000, workload, budget=2.55),
                   render_test_file(BENCHMARK_TEST, 1000, workload)):
        compile(source, "test_pair.py", "exec")
        assert "N = 1000" in source
    assert "min=2.55" in render_test_file(HWOPT_TEST, 1000, workload, budget=2.55)
    expected = 0
    for i in range(10):
        expected ^= i
    assert work(10) == expected
