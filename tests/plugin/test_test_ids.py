"""Test ids as pytest gives them: names and parameters come from the item, never from cutting
the node id, so ids that hold ``::``, ``[`` or ``]`` stay whole in every output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def not_an_xdist_worker(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


ODD_IDS = '''
import pytest


@pytest.mark.parametrize("agg", ["sum"])
@pytest.mark.parametrize("case", [1, 2], ids=["ns::op", "shape=[1, 3]"])
def test_op(hwopt_bench, case, agg):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
'''


def test_pytest_benchmark_json_names_come_from_the_item(pytester, workloads, fast_args,
                                                         tmp_path):
    out, doc = tmp_path / "bench.json", tmp_path / "hwopt.json"
    pytester.makepyfile(test_it=workloads + ODD_IDS)
    result = pytester.runpytest(*fast_args, f"--hwopt-benchmark-json={out}",
                                f"--hwopt-json={doc}")
    result.assert_outcomes(passed=2)
    entries = json.loads(out.read_text())["benchmarks"]
    assert [(b["name"], b["param"], b["fullname"]) for b in entries] == [
        ("test_op[ns::op-sum-slow]", "ns::op-sum-slow", "test_it.py::test_op[ns::op-sum-slow]"),
        ("test_op[ns::op-sum-fast]", "ns::op-sum-fast", "test_it.py::test_op[ns::op-sum-fast]"),
        ("test_op[shape=[1, 3]-sum-slow]", "shape=[1, 3]-sum-slow",
         "test_it.py::test_op[shape=[1, 3]-sum-slow]"),
        ("test_op[shape=[1, 3]-sum-fast]", "shape=[1, 3]-sum-fast",
         "test_it.py::test_op[shape=[1, 3]-sum-fast]")]
    assert entries[0]["params"] == {"case": 1, "agg": "sum", "variant": "slow"}
    assert entries[0]["group"] == "test_it.py::test_op[ns::op-sum]"
    # the results file keeps pytest's own names of each test
    tests = json.loads(doc.read_text())["tests"]
    assert [(t["name"], t["originalname"], t["param"], t["params"]) for t in tests] == [
        ("test_op[ns::op-sum]", "test_op", "ns::op-sum", {"case": 1, "agg": "sum"}),
        ("test_op[shape=[1, 3]-sum]", "test_op", "shape=[1, 3]-sum", {"case": 2, "agg": "sum"})]
    cli = Path(sys.executable).with_name("pytest-benchmark")
    if not cli.exists():
        pytest.skip("pytest-benchmark command not installed")
    shown = subprocess.run([str(cli), "compare", str(out), "--columns=min"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "test_op[ns::op-sum-fast]" in shown.stdout
    assert "test_op[shape=[1, 3]-sum-fast]" in shown.stdout


def test_budget_file_patterns_take_brackets_literally(pytester, workloads, fast_args):
    # the plain node id covers every instance; a full id with brackets names one instance
    pytester.makefile(".toml", budgets='''
[[budget]]
test = "test_it.py::test_op"
speedup = { min = 2.0, vs = "slow", of = "fast" }

[[budget]]
test = "test_it.py::test_op[shape=[1, 3]-sum]"
speedup = { min = 10000.0, vs = "slow", of = "fast" }
''')
    pytester.makepyfile(test_it=workloads + ODD_IDS)
    result = pytester.runpytest(*fast_args, "--hwopt-budgets=budgets.toml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAILED test_it.py::test_op?shape=?1, 3?-sum?*"])
    result.stdout.fnmatch_lines(["*test_op?ns::op-sum?*speedup vs slow*>= 2.00x*passed*"])


def test_html_labels_use_the_test_name(pytester, workloads, fast_args):
    pytest.importorskip("plotly")
    pytester.makepyfile(test_it=workloads + ODD_IDS.replace(
        "def test_op", '@hwopt.speedup(min=2.0, vs="slow")\ndef test_op'))
    result = pytester.runpytest(*fast_args, "--hwopt-html=report.html")
    result.assert_outcomes(passed=2)
    page = (pytester.path / "report.html").read_text()
    assert "test_op[ns::op-sum]" in page and "test_op[shape=[1, 3]-sum]" in page
    # the old labels cut the id at its last "::": "fast vs slow · op-sum]"
    assert not re.search(r"\sop-sum\]", page)


def test_names_of_a_test_in_a_class(pytester, workloads, fast_args, tmp_path):
    out = tmp_path / "bench.json"
    pytester.makepyfile(test_it=workloads + '''
import pytest


class TestOps:
    @pytest.mark.parametrize("n", [3], ids=["a::b"])
    def test_op(self, hwopt_bench, n):
        hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args, f"--hwopt-benchmark-json={out}")
    result.assert_outcomes(passed=1)
    [entry] = json.loads(out.read_text())["benchmarks"]
    assert (entry["name"], entry["fullname"]) == (
        "test_op[a::b-fast]", "test_it.py::TestOps::test_op[a::b-fast]")
