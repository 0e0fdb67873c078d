"""Checks repeated in fresh worker processes: when, how a worker is launched, what counts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_hwopt._plugin import processes
from pytest_hwopt._plugin.processes import WorkerJob, WorkerRun, launch_worker, planned, repeat
from pytest_hwopt.core.checks import FAILED, INCONCLUSIVE, PASSED, REPORTED, Check
from pytest_hwopt.core.settings import AUTO_PROCESSES, OptionError, parse_settings


def check(kind="speedup", status=INCONCLUSIVE, variant="fast", **changes) -> Check:
    fields = {"kind": kind, "variant": variant, "vs": "slow" if kind == "speedup" else None,
              "status": status, "message": f"{kind} of {variant}", "budget": 3.0,
              "measured": 3.01, "low": 2.9, "high": 3.2,
              "metric": "min" if kind == "speedup" else "p95_ms", "point_passed": True}
    return Check(**{**fields, **changes})


# ---- the option ----------------------------------------------------------------------------

def test_the_option_is_auto_a_count_or_zero():
    assert parse_settings({}).processes is None
    assert parse_settings({"hwopt_processes": "auto"}).processes is None
    assert parse_settings({"hwopt_processes": "5"}).processes == 5
    assert parse_settings({"hwopt_processes": "0"}).processes == 0
    for bad in ("-1", "three", "1.5"):
        with pytest.raises(OptionError, match="--hwopt-processes=.*auto or a whole number"):
            parse_settings({"hwopt_processes": bad})


# ---- which checks, how many workers ----------------------------------------------------------

def test_auto_repeats_only_straddling_sampled_checks():
    checks = [check(status=PASSED), check(), check(kind="latency"),
              check(kind="memory", metric="max_mb"), check(status=REPORTED, budget=None),
              check(measured=None, low=None, high=None, point_passed=None)]
    assert planned(checks, None) == (AUTO_PROCESSES, [1, 2])
    assert planned([check(status=PASSED), check(status=FAILED)], None) == (0, [])


def test_an_explicit_count_repeats_every_sampled_check_and_zero_none():
    checks = [check(status=PASSED), check(status=FAILED), check(),
              check(kind="memory", metric="max_mb")]
    assert planned(checks, 4) == (4, [0, 1, 2])
    assert planned(checks, 0) == (0, [])


def test_a_variant_with_wrong_outputs_is_not_repeated():
    checks = [check(kind="accuracy", status=FAILED, vs="slow"), check(status=FAILED),
              check(variant="other")]
    assert planned(checks, 3) == (3, [2])


# ---- what a worker's results count for -------------------------------------------------------

def doc(*checks: dict) -> dict:
    return {"checks": [{"test": "t.py::t", **c} for c in checks]}


def job(n: int) -> WorkerJob:
    return WorkerJob(argv=["worker"], cwd=Path("."), env={}, timeout_s=1.0,
                     json_path=Path(f"w{n}.json"), seed=n)


def test_workers_run_one_after_another_and_their_estimates_count():
    launched: list[int] = []
    runs = iter([doc({"kind": "speedup", "variant": "fast", "vs": "slow", "metric": "min",
                      "measured": value}) for value in (3.3, 3.31, 3.29)])

    def launch(j: WorkerJob) -> WorkerRun:
        launched.append(j.seed)
        return WorkerRun(next(runs), seconds=0.5)

    out = repeat([check(status=PASSED), check(budget=2.0)], [1], [job(1), job(2), job(3)], "t.py::t",
                 0.95, launch)
    assert launched == [1, 2, 3]
    assert out[0] == check(status=PASSED)
    assert out[1].status is PASSED
    assert out[1].detail["processes"]["values"] == [3.01, 3.3, 3.31, 3.29]
    assert out[1].detail["processes"]["seeds"] == [1, 2, 3]


def test_a_failed_worker_is_reported_and_never_counts():
    answers = [WorkerRun(None, "timed out after 61 s"),
               WorkerRun(doc({"kind": "speedup", "variant": "fast", "vs": "slow",
                              "metric": "min", "measured": None, "status": "inconclusive",
                              "message": "machine busy"})),
               WorkerRun({"checks": []}, "exit code 4: ERROR: not found"),
               WorkerRun(doc({"kind": "latency", "variant": "fast", "metric": "p95_ms",
                              "measured": 1.0}))]
    runs = iter(answers)
    before = check()
    out = repeat([before], [0], [job(n) for n in range(1, 5)], "t.py::t", 0.95,
                 lambda j: next(runs))
    after = out[0]
    assert (after.status, after.measured, after.low, after.high) == (
        before.status, before.measured, before.low, before.high)
    failures = after.detail["processes"]["failures"]
    assert failures == [
        "worker 1: timed out after 61 s",
        "worker 2: no estimate (inconclusive: machine busy)",
        "worker 3: no checks for the test in its results (exit code 4: ERROR: not found)",
        "worker 4: the check is missing from its results"]


def test_launch_reports_a_time_out_a_crash_and_missing_results(tmp_path):
    def run(code: str, timeout: float = 30.0) -> WorkerRun:
        return launch_worker(WorkerJob(argv=[sys.executable, "-c", code], cwd=tmp_path, env={},
                                       timeout_s=timeout, json_path=tmp_path / "out.json",
                                       seed=1))

    assert run("import time; time.sleep(30)", timeout=0.5).error == "timed out after 0.5 s"
    crashed = run("raise SystemExit('boom')")
    assert crashed.document is None and crashed.error == "wrote no results (exit code 1: boom)"
    (tmp_path / "out.json").write_text(json.dumps(doc({"kind": "speedup"})))
    fine = run("pass")
    assert fine.error == "" and fine.document is not None and fine.seconds is not None
    assert run("raise SystemExit(3)").error == "exit code 3"


def test_a_worker_gets_its_own_seed_files_and_no_workers_of_its_own(pytester):
    config = pytester.parseconfigure("--hwopt-max-time=0.5", "--hwopt-save=x",
                                     "--hwopt-seed=10", "-p", "no:randomly",
                                     "--hwopt-processes=4")
    settings = parse_settings({"hwopt_seed": "10", "hwopt_threads": "2"})
    made = processes.worker_job(config, "t.py::t[a b]", pytester.path / "tmp", 2, settings,
                                "cpu", 60.0)
    argv = made.argv
    assert argv[:4] == [sys.executable, "-m", "pytest", "t.py::t[a b]"]
    assert {"--hwopt-processes=0", "--hwopt-seed=12", "--hwopt-device=cpu",
            "--hwopt-threads=2", "--hwopt-max-time=0.5", "--hwopt-save="} <= set(argv)
    assert f"--hwopt-json={pytester.path / 'tmp' / 'worker-2.json'}" in argv
    assert argv.count("--hwopt-processes=4") == 0
    assert argv[argv.index("no:randomly") - 1] == "-p"
    assert made.seed == 12 and made.cwd == config.rootpath and made.timeout_s == 60.0
    assert "PYTEST_XDIST_WORKER" not in made.env and "GITHUB_STEP_SUMMARY" not in made.env


# ---- whole sessions ------------------------------------------------------------------------

# a sampled kind whose in-run interval always straddles its budget: the run is always
# inconclusive, so the automatic workers always start; its figure is the real ratio
WIDE_KIND = '''
from pytest_hwopt.core import kinds, stats


def _wide(ev, param):
    ref = ev.require_reference()
    ratio, _, _ = stats.ratio_of_medians(ref.rounds_ms, ev.candidate.rounds_ms)
    return kinds.Figure(value=ratio, low=ratio / 100, high=ratio * 100)


kinds.register(kinds.BudgetKind(
    name="wide_speedup", description="a speedup with a very wide interval",
    signature=kinds.Signature(("min", "vs", "of"), required=("min", "vs"), numbers=("min",)),
    evaluate=kinds.per_value(_wide), unit="x", higher_is_better=True, sampled=True))
'''

WIDE_TEST = '''
import pytest

@pytest.mark.hwopt_wide_speedup(min=2.0, vs="slow")
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
'''

SHORT = ("--hwopt-device=cpu", "--hwopt-max-time=0.3", "--hwopt-warmup-ms=5",
         "--hwopt-min-rounds=3", "--hwopt-block-ms=3", "-p", "no:cacheprovider",
         "--hwopt-json=out.json")


def checks_of(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / "out.json").read_text())["checks"]


def test_a_straddling_check_is_decided_on_fresh_processes(pytester, workloads):
    pytester.makeconftest(WIDE_KIND)
    pytester.makepyfile(test_it=workloads + WIDE_TEST)
    result = pytester.runpytest_subprocess(*SHORT)
    result.assert_outcomes(passed=1)
    (found,) = checks_of(pytester)
    record = found["detail"]["processes"]
    assert record["workers"] == AUTO_PROCESSES and record["failures"] == []
    assert record["count"] == AUTO_PROCESSES + 1 and len(record["values"]) == record["count"]
    assert record["in_run"]["status"] == "inconclusive"
    assert record["seeds"] == [1, 2, 3]
    # the pair's ratio is about 10 in every process: clear of 2.0 across processes
    assert found["status"] == "passed" and found["low"] > 2.0
    assert f"across {AUTO_PROCESSES + 1} processes" in found["message"]


def test_processes_zero_launches_nothing(pytester, workloads):
    pytester.makeconftest(WIDE_KIND)
    pytester.makepyfile(test_it=workloads + WIDE_TEST)
    result = pytester.runpytest_subprocess(*SHORT, "--hwopt-processes=0")
    result.assert_outcomes(passed=1)  # inconclusive: a warning, not a failure
    (found,) = checks_of(pytester)
    assert found["status"] == "inconclusive" and "processes" not in found["detail"]


def test_an_explicit_count_repeats_a_clear_speedup(pytester, workloads):
    pytester.makepyfile(test_it=workloads + '''
@hwopt.speedup(min=2.0, vs="slow")
@hwopt.latency(p50_ms=10_000)
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest_subprocess(*SHORT, "--hwopt-processes=1")
    result.assert_outcomes(passed=1)
    by_kind = {c["kind"]: c for c in checks_of(pytester)}
    assert by_kind["speedup"]["detail"]["processes"]["count"] == 2
    assert by_kind["latency"]["detail"]["processes"]["count"] == 2
    # two processes are one degree of freedom: a wide interval, but never a false miss
    assert by_kind["speedup"]["status"] in ("passed", "inconclusive")
    assert by_kind["speedup"]["detail"]["processes"]["in_run"]["status"] == "passed"
