"""The budget markers as a user writes them: verdicts, messages, summary."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_it=source)
    return pytester.runpytest(*args)


def test_speedup_passes_and_fails_with_a_readable_line(pytester, workloads, fast_args):
    result = run(pytester, workloads + '''
@hwopt.speedup(min=2.0, vs="slow")
def test_enough(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)

@hwopt.speedup(min=100.0, vs="slow")
def test_too_much(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''', *fast_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([
        r".*speedup of fast vs slow: \d+\.\d\dx \(95% CI \d+\.\d\d-\d+\.\d\d\) < 100\.0x"])
    # the summary: one row per test and check, speedups as 3.02x
    result.stdout.fnmatch_lines(["*hwopt summary*", "*test_enough*speedup vs slow*fast*x*passed*",
                                 "*test_too_much*speedup vs slow*failed*"])


def test_pytest_mark_spelling_is_the_same_marker(pytester, workloads, fast_args):
    result = run(pytester, workloads + '''
import pytest

@pytest.mark.hwopt_speedup(min=2.0, vs="slow")
@pytest.mark.hwopt_latency(p95_ms=10_000)
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''', *fast_args, "--strict-markers")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*speedup vs slow*passed*", "*latency p95*fast*passed*"])


def test_latency_budget_fails_with_interval(pytester, workloads, fast_args):
    result = run(pytester, workloads + '''
@hwopt.latency(p95_ms=0.0001, p50_ms=10_000)
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
''', *fast_args)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*p95 latency of slow: .* ms \(95% CI .*\) > 0\.0001 ms"])
    assert "p50 latency of slow" not in "\n".join(
        line for line in result.stdout.lines if line.startswith("p50"))


def test_throughput_counts_items_per_call(pytester, workloads, fast_args):
    result = run(pytester, workloads + '''
@hwopt.throughput(min=1.0)
def test_ok(hwopt_bench):
    hwopt_bench.measure("batch", fast, items=32)

@hwopt.throughput(min=1e12)
def test_too_slow(hwopt_bench):
    hwopt_bench.measure("batch", fast, items=32)
''', *fast_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r".*throughput of batch: .* items/s .* < 1e\+12 items/s"])


def test_memory_budget_on_resident_memory(pytester, fast_args):
    result = run(pytester, '''
import numpy as np
from pytest_hwopt import hwopt

def allocate():
    a = np.ones(64 * 2**20 // 8)  # 64 MB touched
    return float(a[-1])

@hwopt.memory(max_mb=16)
def test_too_big(hwopt_bench):
    hwopt_bench.measure("alloc", allocate)

@hwopt.memory(max_mb=1024)
def test_fits(hwopt_bench):
    hwopt_bench.measure("alloc", allocate)
''', *fast_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r".*peak memory of alloc: \d+.* MB > 16\.0 MB"])


def test_wrong_outputs_fail_accuracy_and_void_the_speedup(pytester, fast_args):
    result = run(pytester, '''
import numpy as np
from pytest_hwopt import hwopt

x = np.linspace(0, 1, 1000)

@hwopt.speedup(min=0.01, vs="ref")
@hwopt.accuracy(atol=1e-6, rtol=0, vs="ref")
def test_it(hwopt_bench):
    hwopt_bench.measure("ref", lambda: np.sin(x))
    hwopt_bench.measure("approx", lambda: x - x**3 / 6)
''', *fast_args)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*outputs of approx differ from ref: max abs error .* at output at \(\d+,\)",
        r".*speedup of approx vs ref: .* not counted: outputs of approx are wrong"])


def test_accuracy_passes_within_tolerance(pytester, fast_args):
    result = run(pytester, '''
import numpy as np
from pytest_hwopt import hwopt

x = np.linspace(0, 1, 1000)

@hwopt.accuracy(atol=1e-3, vs="ref")
def test_it(hwopt_bench):
    hwopt_bench.measure("ref", lambda: {"y": np.sin(x), "n": [x.sum()]})
    hwopt_bench.measure("fast", lambda: {"y": np.sin(x) + 1e-5, "n": [x.sum()]})
''', *fast_args)
    result.assert_outcomes(passed=1)


def test_budget_per_device_kind(pytester, workloads, fast_args):
    result = run(pytester, workloads + '''
@hwopt.speedup(min={"cpu": 2.0, "cuda": 50.0}, vs="slow")
def test_cpu_entry(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)

@hwopt.speedup(min={"cuda": 50.0}, vs="slow")
def test_no_cpu_entry(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''', *fast_args)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_cpu_entry*speedup*passed*",
                                 "*test_no_cpu_entry*speedup*skipped*"])


def test_run_returns_results_for_own_asserts(pytester, workloads, fast_args):
    result = run(pytester, workloads + '''
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
    results = hwopt_bench.run()
    assert set(results) == {"slow", "fast"}
    r = results["fast"]
    assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms
    assert r.median_ms == r.p50_ms and r.mean_ms > 0
    assert len(r.samples_ms) >= 5 and r.calls >= len(r.samples_ms)
    assert results["slow"].median_ms > 3 * r.median_ms
''', *fast_args)
    result.assert_outcomes(passed=1)


def test_report_only_measures_but_never_fails(pytester, workloads, fast_args):
    result = run(pytester, workloads + '''
@hwopt.speedup(min=100.0, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''', *fast_args, "--hwopt-report-only")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*speedup vs slow*failed*", "*report only*"])


def test_report_only_from_ini(pytester, workloads, fast_args):
    pytester.makeini("[pytest]\nhwopt_report_only = true\n")
    result = run(pytester, workloads + '''
@hwopt.speedup(min=100.0, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''', *fast_args)
    result.assert_outcomes(passed=1)


def test_json_document(pytester, workloads, fast_args):
    out = pytester.path / "out" / "results.json"
    result = run(pytester, workloads + '''
@hwopt.speedup(min=2.0, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''', *fast_args, f"--hwopt-json={out}")
    result.assert_outcomes(passed=1)
    doc = json.loads(out.read_text())
    assert {"version", "environment", "results", "checks"} <= set(doc)
    assert doc["environment"]["device"] == "cpu"
    assert "torch" not in doc["environment"]["versions"] or doc["environment"]["versions"]["torch"]
    by_variant = {r["variant"]: r for r in doc["results"]}
    assert set(by_variant) == {"slow", "fast"}
    for r in doc["results"]:
        assert r["test"] == "test_it.py::test_it"
        assert {"median_ms", "p95_ms", "p99_ms", "mean_ms", "samples"} <= set(r)
        assert len(r["samples"]) >= 5
    (check,) = doc["checks"]
    assert check["test"] == "test_it.py::test_it"
    assert check["kind"] == "speedup" and check["budget"] == 2.0 and check["passed"] is True
    assert check["low"] <= check["measured"] <= check["high"]
    assert not list(out.parent.glob(".results.json*")), "temporary file left behind"


def test_json_path_that_is_a_directory_is_a_usage_error(pytester, fast_args):
    pytester.makepyfile(test_it="def test_x():\n    pass\n")
    result = pytester.runpytest(*fast_args, f"--hwopt-json={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-json=*is a directory*"])


def test_contention_and_faults_are_recorded(pytester, workloads, fast_args):
    out = pytester.path / "r.json"
    result = run(pytester, workloads + '''
def test_it(hwopt_bench):
    hwopt_bench.measure("fast", fast)
''', *fast_args, f"--hwopt-json={out}")
    result.assert_outcomes(passed=1)
    doc = json.loads(out.read_text())
    (test,) = doc["tests"]
    assert set(test["contention"]) >= {"other_busy_cores", "steal_fraction", "load1", "contended"}
    assert doc["results"][0]["minor_faults_per_call"] is not None
    assert doc["environment"]["threads"] >= 1
    assert re.match(r"\d+\.\d+", doc["environment"]["python"])


def test_sampling_goes_on_while_the_speedup_is_unclear_even_with_an_accuracy_budget(
        pytester, fast_args, tmp_path):
    """Outputs are compared after the run; mid-run they must not end the sampling early."""
    out = tmp_path / "r.json"
    result = run(pytester, '''
import itertools
from pytest_hwopt import hwopt


class Straddling:
    """Per-sample times whose ratio of medians sits exactly on the budget."""
    name = "fake"

    def __init__(self, times):
        self.times = times

    def time_samples(self, fn, calls_per_sample, samples):
        fn()
        times = self.times.get(fn, itertools.repeat(0.001))  # warm-up wraps the first call
        return [next(times) for _ in range(samples)]


def slow():
    return [1.0, 2.0]


def fast():
    return [1.0, 2.0]


@hwopt.speedup(min=3.0, vs="slow")
@hwopt.accuracy(atol=0, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
    hwopt_bench._engine.timer = Straddling({
        slow: itertools.cycle([0.0027] * 3 + [0.0033] * 3), fast: itertools.repeat(0.001)})
''', *fast_args, "--hwopt-max-time=0.5", "--hwopt-report-only", f"--hwopt-json={out}")
    result.assert_outcomes(passed=1)
    test = json.loads(out.read_text())["tests"][0]
    assert test["stopped"] == "time limit" and test["rounds"] > 5
