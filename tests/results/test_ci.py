"""Every check where CI looks: JUnit XML (xunit2 and xunit1) and the GitHub job summary."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET

import pytest

from pytest_hwopt.core.checks import Check
from pytest_hwopt.results.ci import (
    CHECK_HEADER,
    append_step_summary,
    check_rows,
    junit_properties,
    step_summary,
    system_out_text,
)


def check_dict(**overrides):
    base = Check(kind="speedup", variant="fused", vs="naive", budget=2.0, measured=3.0, low=2.5,
                 high=3.5, unit="x", status="passed", message="msg", metric="min").to_dict()
    base.update(overrides)
    return base


RECORDS = [
    {"test": "t.py::test_a[x|y]", "device": "cpu", "checks": [
        check_dict(),
        check_dict(status="inconclusive", reason="machine busy: 83% of samples disturbed"),
        check_dict(status="failed", measured=1.5, low=1.4, high=1.6)]},
    {"test": "t.py::test_b", "device": "cpu", "checks": [], "results": [
        {"variant": "v", "median_ms": 1.25, "p95_ms": 2.0}]},
]


def test_check_rows_cover_every_check():
    rows = check_rows(RECORDS)
    assert all(len(r) == len(CHECK_HEADER) for r in rows)
    assert rows[0] == ["t.py::test_a[x|y]", "speedup vs naive", "fused", "3.00x",
                       "[2.50x, 3.50x]", ">= 2.00x", "passed", ""]
    assert rows[1][6:] == ["inconclusive", "machine busy: 83% of samples disturbed"]
    assert rows[2][6] == "failed"
    assert rows[3] == ["t.py::test_b", "median", "v", "1.25 ms", "p95 2 ms", "-", "measured", ""]


def test_inconclusive_without_a_reason_says_why():
    """Documents written before checks carried a reason."""
    rec = {"test": "t", "checks": [{k: v for k, v in check_dict(status="inconclusive").items()
                                    if k != "reason"}]}
    assert check_rows([rec])[0][-1] == "interval straddles the budget"


def test_junit_properties_one_per_check():
    props = junit_properties(RECORDS)
    assert props[0] == ("hwopt t.py::test_a[x|y] | speedup vs naive | fused",
                        "passed: 3.00x [2.50x, 3.50x], budget >= 2.00x")
    assert props[1][1] == ("inconclusive: 3.00x [2.50x, 3.50x], budget >= 2.00x; "
                           "machine busy: 83% of samples disturbed")
    assert len(props) == 4


def test_system_out_lines():
    text = system_out_text(RECORDS[0])
    lines = text.splitlines()
    assert lines[0] == "hwopt checks:"
    assert lines[1].split() == ["check", "variant", "measured", "interval", "budget", "status",
                                "reason"]
    assert "machine busy: 83% of samples disturbed" in lines[4]
    assert system_out_text({"test": "t", "checks": []}) == ""


def test_step_summary_markdown():
    text = step_summary(RECORDS)
    lines = text.splitlines()
    assert lines[0] == "### pytest-hwopt"
    assert lines[2].startswith("hwopt: 2 test(s) measured on cpu; checks: 1 failed, "
                               "1 inconclusive, 1 passed")
    assert lines[4] == "| " + " | ".join(CHECK_HEADER) + " |"
    assert lines[5] == "|---|---|---|---|---|---|---|---|"
    # a pipe in a test id does not split the cell
    assert lines[6].startswith("| `t.py::test_a[x\\|y]` | speedup vs naive | fused | 3.00x |")
    assert lines[7].endswith("| **inconclusive** | machine busy: 83% of samples disturbed |")
    assert "| **failed** |" in lines[8]
    assert all(line.count(" | ") == len(CHECK_HEADER) - 1 for line in lines[6:10])
    assert step_summary([]) == ""


def test_append_step_summary_keeps_what_is_there(tmp_path):
    path = tmp_path / "summary.md"
    path.write_text("earlier step\n")
    append_step_summary(path, "ours\n")
    assert path.read_text() == "earlier step\nours\n"


# ---- in a pytest run ---------------------------------------------------------------------

TESTS = '''
from pytest_hwopt import hwopt


def spin(n):
    total = 0
    for i in range(n):
        total += i
    return total


@hwopt.speedup(min=1.5, vs="slow")
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", lambda: spin(20_000))
    hwopt_bench.measure("fast", lambda: spin(2_000))


def test_plain():
    pass
'''


def _testsuite(path):
    root = ET.parse(path).getroot()
    return root if root.tag == "testsuite" else root.find("testsuite")


@pytest.mark.parametrize("family", ["xunit2", "xunit1"])
def test_junit_xml_shows_every_check(pytester, fast_args, tmp_path, family):
    pytester.makepyfile(test_it=TESTS)
    xml = tmp_path / "junit.xml"
    # one thread per pool: a pure-Python pair, which a neighbour on the other core must not
    # make "pools without their cores" (inconclusive, an error under filterwarnings=error)
    result = pytester.runpytest(*fast_args, "--hwopt-threads=1", f"--junitxml={xml}",
                                "-o", f"junit_family={family}", "-o", "junit_logging=system-out")
    result.assert_outcomes(passed=2)
    assert "PytestWarning" not in result.stdout.str()  # nothing xunit2 does not allow
    suite = _testsuite(xml)
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert list(props) == ["hwopt test_it.py::test_pair | speedup vs slow | fast"]
    assert props["hwopt test_it.py::test_pair | speedup vs slow | fast"].startswith("passed: ")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    pair, plain = cases["test_pair"], cases["test_plain"]
    out = pair.find("system-out").text
    assert "hwopt checks:" in out and "speedup vs slow" in out and "passed" in out
    assert plain.find("system-out") is None or "hwopt" not in (plain.find("system-out").text
                                                               or "")
    if family == "xunit2":  # properties stand only on the testsuite
        assert pair.find("properties") is None


def test_junit_properties_without_output_logging(pytester, fast_args, tmp_path):
    """With pytest's default junit_logging = no the testsuite properties still carry it."""
    pytester.makepyfile(test_it=TESTS)
    xml = tmp_path / "junit.xml"
    pytester.runpytest(*fast_args, f"--junitxml={xml}").assert_outcomes(passed=2)
    suite = _testsuite(xml)
    assert [p.get("name") for p in suite.findall("properties/property")] == [
        "hwopt test_it.py::test_pair | speedup vs slow | fast"]


def test_github_step_summary(pytester, fast_args, tmp_path, monkeypatch):
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(test_it=TESTS)
    pytester.runpytest(*fast_args).assert_outcomes(passed=2)
    text = summary.read_text()
    assert text.startswith("earlier step\n### pytest-hwopt\n")
    assert "| `test_it.py::test_pair` | speedup vs slow | fast |" in text
    assert "| passed |" in text


def test_no_step_summary_without_the_variable(pytester, fast_args, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_it=TESTS)
    pytester.runpytest(*fast_args).assert_outcomes(passed=2)
    assert not list(pytester.path.glob("*.md"))


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")
def test_under_xdist_the_controller_writes_once(pytester, fast_args, tmp_path, monkeypatch):
    summary, xml = tmp_path / "step_summary.md", tmp_path / "junit.xml"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(test_it=TESTS.replace("def test_pair", "@__import__('pytest').mark."
                                               "parametrize('i', [1, 2])\ndef test_pair")
                        .replace("(hwopt_bench):", "(hwopt_bench, i):"))
    result = pytester.runpytest_subprocess(*fast_args, "-n", "2", f"--junitxml={xml}",
                                           "-o", "junit_logging=system-out")
    result.assert_outcomes(passed=3)
    text = summary.read_text()
    assert text.count("### pytest-hwopt") == 1
    assert text.count("| speedup vs slow |") == 2
    suite = _testsuite(xml)
    assert sorted(p.get("name") for p in suite.findall("properties/property")) == [
        f"hwopt test_it.py::test_pair[{i}] | speedup vs slow | fast" for i in (1, 2)]
    outs = [c.find("system-out") for c in suite.findall("testcase")
            if c.get("name").startswith("test_pair")]
    assert all(o is not None and "hwopt checks:" in o.text for o in outs)
