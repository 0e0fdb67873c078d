"""Results a team keeps: budgets files, saved baselines, regressions, pytest-benchmark interop."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def not_an_xdist_worker(monkeypatch):
    """Inner sessions are not xdist workers, even when this suite runs under -n: pytest-benchmark
    disables itself when it sees PYTEST_XDIST_WORKER."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PAIR = '''
@hwopt.speedup(min=100.0, vs="slow")
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)


def test_plain():
    pass


def test_measures(hwopt_bench):
    hwopt_bench.measure("fast", fast)
'''


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_it=source)
    return pytester.runpytest(*args)


def machine_dir(root: Path) -> Path:
    from pytest_hwopt.hardware.devices import cpu_device
    from pytest_hwopt.results import baseline

    return root / ".hwopt" / baseline.machine_key(platform.node(), cpu_device().name)


# ---- A. budgets per machine -----------------------------------------------------------------

def test_help_lists_the_options(pytester):
    result = pytester.runpytest("--help")
    for flag in ("--hwopt-budgets", "--hwopt-save", "--hwopt-save-overwrite", "--hwopt-compare",
                 "--hwopt-max-regression", "--hwopt-benchmark-json"):
        result.stdout.fnmatch_lines([f"*{flag}*"])


def test_budgets_file_replaces_a_marker_for_this_device(pytester, workloads, fast_args):
    pytester.makefile(".toml", budgets='''
[[budget]]
test = "test_it.py::test_pair"
device = "cpu"
speedup = { min = 2.0, vs = "slow" }

[[budget]]
test = "test_it.py::test_pair"
device = "cuda"
speedup = { min = 1000.0, vs = "slow" }
''')
    result = run(pytester, workloads + PAIR, *fast_args, "--hwopt-budgets=budgets.toml")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_pair*speedup vs slow*fast*>= 2.00x*passed*"])


def test_budgets_file_adds_budgets_only_to_measuring_tests(pytester, workloads, fast_args):
    pytester.makefile(".toml", budgets='''
[[budget]]
test = "test_it.py::*"
latency = { p95_ms = 0.000001 }
''')
    result = run(pytester, workloads + PAIR, *fast_args, "--hwopt-budgets=budgets.toml")
    # test_pair: its own speedup (100x) fails, and the added latency of "fast" fails;
    # test_measures fails on the added budget; test_plain measures nothing and is left alone
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.re_match_lines([r".*p95 latency of fast: .* ms .* > 1e-06 ms"])
    result.stdout.fnmatch_lines(["*test_measures*latency p95*fast*failed*"])


def test_budgets_from_pyproject(pytester, workloads, fast_args):
    pytester.makepyprojecttoml('''
[tool.hwopt]

[[tool.hwopt.budget]]
test = "test_it.py::test_pair"
speedup = { min = 1.5, vs = "slow" }
''')
    result = run(pytester, workloads + PAIR, *fast_args)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_pair*speedup vs slow*>= 1.50x*passed*",
                                 "*hwopt results*", "hwopt: 1 budget entry from pyproject.toml"])


def test_budgets_ini_key_is_relative_to_the_ini_file(pytester, workloads, fast_args):
    (pytester.path / "conf").mkdir()
    (pytester.path / "conf" / "b.toml").write_text(
        '[[budget]]\ntest = "*::test_pair"\nspeedup = { min = 1.2, vs = "slow" }\n')
    pytester.makeini("[pytest]\nhwopt_budgets = conf/b.toml\n")
    result = run(pytester, workloads + PAIR, *fast_args)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_pair*>= 1.20x*passed*"])


def test_an_invalid_budgets_file_is_a_usage_error(pytester, workloads, fast_args):
    pytester.makefile(".toml", budgets='''[[budget]]
test = "test_it.py::*"

latency = { p95_ms = 0 }
''')
    result = run(pytester, workloads + PAIR, *fast_args, "--hwopt-budgets=budgets.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("--hwopt-budgets=budgets.toml: " in result.stderr.str())
    assert ("budgets.toml:4: [[budget]] #1, key 'latency': hwopt_latency: 'p95_ms' must be "
            "positive" in result.stderr.str())
    result = run(pytester, workloads, *fast_args, "--hwopt-budgets=missing.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*missing.toml: budgets file not found*"])


# ---- B. baselines and regressions -----------------------------------------------------------

def test_save_numbers_runs_per_machine(pytester, workloads, fast_args):
    pytester.makepyfile(test_it=workloads + '''
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args, "--hwopt-save=main")
    result.assert_outcomes(passed=1)
    directory = machine_dir(pytester.path)
    first = directory / "0001_main.json"
    result.stdout.fnmatch_lines([f"*hwopt: run saved to {first.relative_to(pytester.path)}*"])
    saved = json.loads(first.read_text())
    assert {(r["test"], r["variant"]) for r in saved["results"]} == {
        ("test_it.py::test_pair", "slow"), ("test_it.py::test_pair", "fast")}
    assert all(len(r["samples"]) >= 5 for r in saved["results"])
    pytester.runpytest(*fast_args, "--hwopt-save=main").assert_outcomes(passed=1)
    assert sorted(p.name for p in directory.iterdir()) == ["0001_main.json", "0002_main.json"]
    # the latest run of that name is the baseline; report only: timings may differ here
    result = pytester.runpytest(*fast_args, "--hwopt-compare=main", "--hwopt-report-only")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*hwopt results*",
                                 "*compared with baseline .hwopt/*/0002_main.json*",
                                 "test_it.py::test_pair*slow*ms*ms*x*",
                                 "*hwopt: baseline comparison: *(threshold 10%, p < 0.01)*"])
    result = pytester.runpytest(*fast_args, "--hwopt-compare=0001", "--hwopt-report-only")
    result.stdout.fnmatch_lines(["*compared with baseline .hwopt/*/0001_main.json*"])


def test_save_to_a_path_refuses_to_overwrite(pytester, workloads, fast_args):
    pytester.makepyfile(test_it=workloads + '''
def test_one(hwopt_bench):
    hwopt_bench.measure("fast", fast)
''')
    target = pytester.path / "out" / "run.json"
    pytester.runpytest(*fast_args, "--hwopt-save=out/run.json").assert_outcomes(passed=1)
    assert json.loads(target.read_text())["results"][0]["variant"] == "fast"
    result = pytester.runpytest(*fast_args, "--hwopt-save=out/run.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-save=out/run.json: *run.json exists; pass "
                                 "--hwopt-save-overwrite*"])
    result = pytester.runpytest(*fast_args, "--hwopt-save=out/run.json", "--hwopt-save-overwrite")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest(*fast_args, "--hwopt-save=bad name")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def baseline_doc(samples_ms: float, **environment) -> dict:
    return {"version": "0.1.0", "format": 1, "environment": environment, "tests": [],
            "checks": [],
            "results": [{"test": "test_it.py::test_one", "variant": "fast",
                         "samples": [samples_ms * (1 + i / 1000) for i in range(50)]}]}


ONE = '''
def test_one(hwopt_bench):
    hwopt_bench.measure("fast", fast)


def test_other(hwopt_bench):
    hwopt_bench.measure("other", fast)
'''


def test_a_significant_regression_fails_that_test(pytester, workloads, fast_args):
    base = pytester.path / "base.json"
    base.write_text(json.dumps(baseline_doc(0.0001)))  # far faster than spin(2000)
    result = run(pytester, workloads + ONE, *fast_args, f"--hwopt-compare={base}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([
        r".*regression of fast vs baseline: median 0\.0001\d* ms -> .* ms, \d+\.\d\dx slower "
        r"\(Mann-Whitney p=.*\) > 1\.10x allowed"])
    result.stdout.fnmatch_lines(["*test_one*regression*fast*<= 1.10x*failed*",
                                 "*test_one*fast*0.0001* ms*regression",
                                 "*test_other*other*new",
                                 "*1 regression, 1 new (threshold 10%, p < 0.01)*"])
    # a larger allowance does not change a 100x slow-down; report-only keeps the test green
    run(pytester, workloads + ONE, *fast_args, f"--hwopt-compare={base}",
        "--hwopt-report-only").assert_outcomes(passed=2)


def test_an_improvement_passes_with_a_message(pytester, workloads, fast_args, tmp_path):
    base = pytester.path / "base.json"
    base.write_text(json.dumps(baseline_doc(1000.0)))
    out = tmp_path / "out.json"
    result = run(pytester, workloads + ONE, *fast_args, f"--hwopt-compare={base}",
                 "--hwopt-max-regression=0.2", f"--hwopt-json={out}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_one*regression*fast*<= 1.20x*passed*",
                                 "*test_one*fast*improvement"])
    doc = json.loads(out.read_text())
    check = next(c for c in doc["checks"] if c["kind"] == "regression")
    assert check["status"] == "passed" and check["message"].startswith("improved: fast")
    assert check["detail"]["verdict"] == "improvement"
    assert doc["baseline"]["max_regression"] == 0.2
    assert doc["baseline"]["counts"] == {"improvement": 1, "new": 1}


def test_environment_mismatch_is_shown_and_stored(pytester, workloads, fast_args, tmp_path):
    base = pytester.path / "base.json"
    base.write_text(json.dumps(baseline_doc(
        1.0, gpu="NVIDIA H100 80GB HBM3", threads=999, versions={"tensorrt": "10.0.1"})))
    out = tmp_path / "out.json"
    result = run(pytester, workloads + ONE, *fast_args, f"--hwopt-compare={base}",
                 f"--hwopt-json={out}", "--hwopt-threads=2", "--hwopt-report-only")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*hwopt: environment differs from the baseline: gpu: baseline NVIDIA H100 80GB HBM3, "
        "now none*",
        "*hwopt: environment differs from the baseline: tensorrt: baseline 10.0.1, now none*",
        "*hwopt: environment differs from the baseline: threads: baseline 999, now 2*"])
    env = json.loads(out.read_text())["environment"]
    assert "threads: baseline 999, now 2" in env["baseline_mismatch"]


def test_tests_of_the_baseline_not_run_are_counted_not_listed(pytester, workloads, fast_args):
    data = baseline_doc(1.0)
    data["results"].append({"test": "test_gone.py::test_x", "variant": "v", "samples": [1.0]})
    (pytester.path / "base.json").write_text(json.dumps(data))
    result = run(pytester, workloads + ONE, *fast_args, "--hwopt-compare=base.json",
                 "--hwopt-report-only")
    result.stdout.fnmatch_lines(["*; 1 test(s) of the baseline not run*"])
    assert "test_gone" not in result.stdout.str()


@pytest.mark.parametrize("content,words", [
    ("{broken", "not a pytest-hwopt results file: not JSON"),
    ('{"benchmarks": [], "version": "5.1.0"}', "no 'results' and 'version' keys"),
])
def test_a_corrupt_or_foreign_baseline_is_a_usage_error(pytester, workloads, fast_args,
                                                        content, words):
    (pytester.path / "base.json").write_text(content)
    result = run(pytester, workloads + ONE, *fast_args, "--hwopt-compare=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--hwopt-compare=base.json: *base.json: *{words}*"])


def test_bad_compare_and_threshold_values(pytester, workloads, fast_args):
    result = run(pytester, workloads + ONE, *fast_args, "--hwopt-compare=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-compare=nosuch: no run saved as 'nosuch' for this "
                                 "machine in *; saved: none; save one with --hwopt-save=NAME*"])
    result = run(pytester, workloads + ONE, *fast_args, "--hwopt-compare=nosuch.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*nosuch.json: no such file*"])
    result = run(pytester, workloads + ONE, *fast_args, "--hwopt-max-regression=10")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-max-regression=10: 10: ambiguous*"])


# ---- D. pytest-benchmark interop ------------------------------------------------------------

pytest.importorskip("pytest_benchmark")


def test_measurements_from_a_real_benchmark_run(pytester):
    pytester.makepyfile(test_it='''
import pytest

from pytest_hwopt.results.benchmark_format import measurements_from_benchmark


def work():
    return sum(range(2000))


def test_it(benchmark):
    benchmark.extra_info["items"] = 4
    benchmark(work)
    found = measurements_from_benchmark(benchmark)
    assert list(found) == ["benchmark"]
    m = found["benchmark"]
    data = benchmark.stats.stats.data
    assert len(m.samples_ms) == len(data) >= 5
    assert m.samples_ms == [t * 1000.0 for t in data]
    assert m.calls_per_sample == benchmark.stats.iterations
    assert m.items == 4
    assert 0 < m.median_ms < 100


def test_pedantic(benchmark):
    benchmark.pedantic(work, rounds=7, iterations=3)
    m = measurements_from_benchmark(benchmark)["benchmark"]
    assert len(m.samples_ms) == 7 and m.calls_per_sample == 3


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
def test_unused(benchmark):
    assert measurements_from_benchmark(benchmark) == {}
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--benchmark-min-rounds=5",
                                "--benchmark-max-time=0.05", "--hwopt-device=cpu")
    result.assert_outcomes(passed=3)


def test_latency_budget_on_a_benchmark_test(pytester, fast_args):
    pytester.makepyfile(test_it='''
from pytest_hwopt import hwopt


@hwopt.latency(p95_ms=10_000)
@hwopt.throughput(min=1.0)
def test_it(benchmark):
    benchmark(lambda: sum(range(2000)))
''')
    result = pytester.runpytest(*fast_args, "--benchmark-max-time=0.05")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_it*latency p95*benchmark*passed*",
                                 "*test_it*throughput*benchmark*passed*"])


def test_budgets_file_and_baseline_apply_to_a_benchmark_test(pytester, fast_args):
    pytester.makefile(".toml", budgets='''
[[budget]]
test = "test_it.py::*"
latency = { p50_ms = 0.000001 }
''')
    samples = [0.00001 * (1 + i / 100) for i in range(30)]
    (pytester.path / "base.json").write_text(json.dumps({"version": "0.1.0", "results": [
        {"test": "test_it.py::test_it", "variant": "benchmark", "samples": samples}]}))
    pytester.makepyfile(test_it='''
def test_it(benchmark):
    benchmark(lambda: sum(range(2000)))


def test_not_benchmarked():
    pass
''')
    result = pytester.runpytest(*fast_args, "--benchmark-max-time=0.05",
                                "--hwopt-budgets=budgets.toml", "--hwopt-compare=base.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r".*p50 latency of benchmark: .* > 1e-06 ms",
                                  r".*regression of benchmark vs baseline: .*x slower.*"])


def test_benchmark_json_is_read_by_pytest_benchmark_compare(pytester, workloads, fast_args,
                                                             tmp_path):
    out = tmp_path / "bench.json"
    result = run(pytester, workloads + '''
@pytest.mark.parametrize("n", [1, 2])
def test_pair(hwopt_bench, n):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
'''.replace("@pytest", "import pytest\n\n@pytest"), *fast_args, f"--hwopt-benchmark-json={out}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*hwopt: pytest-benchmark JSON written to {out}*"])
    data = json.loads(out.read_text())
    assert [b["fullname"] for b in data["benchmarks"]] == [
        "test_it.py::test_pair[1-slow]", "test_it.py::test_pair[1-fast]",
        "test_it.py::test_pair[2-slow]", "test_it.py::test_pair[2-fast]"]
    cli = Path(sys.executable).with_name("pytest-benchmark")
    if not cli.exists():
        pytest.skip("pytest-benchmark command not installed")
    shown = subprocess.run([str(cli), "compare", str(out), "--columns=min,median,rounds"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "Failed to load" not in shown.stdout + shown.stderr
    for name in ("test_pair[1-slow]", "test_pair[1-fast]", "test_pair[2-slow]",
                 "test_pair[2-fast]"):
        assert name in shown.stdout
    assert "benchmark 'test_it.py::test_pair[1]': 2 tests" in shown.stdout


def test_both_plugins_in_one_session(pytester, workloads, fast_args, tmp_path):
    out = tmp_path / "pb.json"
    result = run(pytester, workloads + '''
@hwopt.speedup(min=2.0, vs="slow")
def test_hwopt(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)


def test_pytest_benchmark(benchmark):
    assert benchmark(fast) == sum(range(2000))
''', *fast_args, "--benchmark-max-time=0.05", f"--benchmark-json={out}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*benchmark: 1 tests*", "*test_pytest_benchmark*"])
    result.stdout.fnmatch_lines(["*hwopt summary*", "*test_hwopt*speedup vs slow*passed*",
                                 "hwopt: 1 test(s) measured on cpu*"])
    names = [b["name"] for b in json.loads(out.read_text())["benchmarks"]]
    assert names == ["test_pytest_benchmark"]


def test_html_report_option_writes_a_self_contained_page(pytester, workloads, fast_args):
    pytest.importorskip("plotly")
    out = pytester.path / "report" / "hwopt.html"
    pytester.makepyfile(test_it=workloads + '''
@hwopt.speedup(min=2.0, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args, f"--hwopt-html={out}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*HTML report written to *hwopt.html*"])
    page = out.read_text()
    assert "test_it.py::test_it" in page and "speedup of fast vs slow" in page
    assert "<script src=\"http" not in page
