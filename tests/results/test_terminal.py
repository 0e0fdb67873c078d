"""Unit tests for pytest_hwopt.results.terminal: value formatting, the summary table, totals."""

from __future__ import annotations

import pytest

from pytest_hwopt.core.verdicts import Check
from pytest_hwopt.results import jsonio, schema
from pytest_hwopt.results import terminal as report
from pytest_hwopt.results.terminal import (
    SUMMARY_HEADER,
    format_value,
    status_counts,
    summary_rows,
    table,
    totals_line,
)


@pytest.mark.parametrize("value,unit,expected", [
    (None, "ms", "-"),
    (None, "x", "-"),
    (3.0159, "x", "3.02x"),
    (2.0, "x", "2.00x"),
    (999.994, "x", "999.99x"),
    (1500.0, "x", "1500x"),
    (123456.0, "x", "1.235e+05x"),
    (1.25, "ms", "1.25 ms"),
    (0.0123456, "ms", "0.01235 ms"),
    (12.34, "MB", "12.34 MB"),
    (16000.0, "items/s", "1.6e+04 items/s"),
    (0.6, "", "0.6"),
    (0.123456, "", "0.123"),
])
def test_format_value(value, unit, expected):
    assert format_value(value, unit) == expected


def check_dict(**overrides):
    base = Check(kind="speedup", variant="fused", vs="naive", budget=2.0, measured=3.0, low=2.5,
                 high=3.5, unit="x", status="passed", message="msg", metric="min").to_dict()
    base.update(overrides)
    return base


def test_summary_rows_for_checks():
    rec = {"test": "t.py::test_a", "checks": [
        check_dict(),
        check_dict(kind="latency", metric="p95_ms", vs=None, unit="ms", budget=5.0,
                   measured=4.0, low=3.5, high=4.5),
        check_dict(kind="accuracy", metric="max_abs_error", unit="", budget=1e-4,
                   measured=2e-5, low=2e-5, high=2e-5),
        check_dict(kind="cold_start", metric="max_s", vs=None, unit="s", budget=None,
                   measured=None, low=None, high=None, status="skipped"),
        check_dict(kind="throughput", metric="min", vs=None, unit="items/s", budget=1000.0,
                   measured=1200.0, low=900.0, high=1500.0, status="inconclusive", passed=True),
        check_dict(status="inconclusive", passed=False,
                   reason="machine busy: 83% of samples disturbed"),
    ]}
    assert summary_rows([rec]) == [
        ["t.py::test_a", "speedup vs naive", "fused", "3.00x", "[2.50x, 3.50x]", ">= 2.00x",
         "passed", ""],
        ["t.py::test_a", "latency p95", "fused", "4 ms", "[3.5 ms, 4.5 ms]", "<= 5 ms",
         "passed", ""],
        ["t.py::test_a", "accuracy vs naive", "fused", "2e-05", "", "atol 0.0001", "passed", ""],
        ["t.py::test_a", "cold start", "fused", "-", "", "-", "skipped", ""],
        ["t.py::test_a", "throughput", "fused", "1200 items/s", "[900 items/s, 1500 items/s]",
         ">= 1000 items/s", "inconclusive (interval straddles the budget)", ""],
        ["t.py::test_a", "speedup vs naive", "fused", "3.00x", "[2.50x, 3.50x]", ">= 2.00x",
         "inconclusive (machine busy: 83% of samples disturbed)", ""],
    ]


def test_summary_rows_budget_signs():
    rows = summary_rows([{"test": "t", "checks": [
        check_dict(kind="roofline", unit="", budget=0.5),
        check_dict(kind="memory", unit="MB", budget=64.0),
        check_dict(kind="energy", unit="mJ", budget=2.0),
    ]}])
    assert [r[5] for r in rows] == [">= 0.5", "<= 64 MB", "<= 2 mJ"]
    assert [r[1] for r in rows] == ["roofline", "memory", "energy"]


def test_summary_rows_without_checks_list_variants():
    rec = {"test": "t::b", "contention": {"contended": True}, "results": [
        {"variant": "naive", "median_ms": 2.0, "p95_ms": 2.5},
        {"variant": "fused", "median_ms": 1.0, "p95_ms": 1.25},
    ]}
    assert summary_rows([rec]) == [
        ["t::b", "median", "naive", "2 ms", "p95 2.5 ms", "-", "measured", "contended"],
        ["t::b", "median", "fused", "1 ms", "p95 1.25 ms", "-", "measured", "contended"],
    ]


def test_a_variant_prepared_from_the_cache_says_so():
    rec = {"test": "t::m", "results": [
        {"variant": "pytorch", "median_ms": 2.0, "p95_ms": 2.5},
        {"variant": "onnxruntime", "median_ms": 1.0, "p95_ms": 1.25, "from_cache": True},
    ], "checks": [check_dict(variant="onnxruntime", vs="pytorch")]}
    assert summary_rows([rec])[0][-1] == "from cache"
    del rec["checks"]
    assert [row[-1] for row in summary_rows([rec])] == ["", "from cache"]


def test_summary_rows_empty():
    assert summary_rows([]) == []
    assert summary_rows([{"test": "t"}]) == []


def test_table_alignment():
    lines = table([["a", "long value", "x"], ["bbbb", "v", ""]], ["h1", "h2", "h3"])
    assert lines == [
        "h1    h2          h3",
        "----  ----------  --",
        "a     long value  x",
        "bbbb  v",
    ]


def test_table_of_summary_header_only():
    lines = table([], SUMMARY_HEADER)
    assert lines[0] == "  ".join(SUMMARY_HEADER)
    assert lines[1] == "  ".join("-" * len(h) for h in SUMMARY_HEADER)


def test_status_counts_in_first_seen_order():
    checks = [check_dict(), check_dict(status="failed"), check_dict(), {"kind": "x"}]
    assert status_counts(checks) == {"passed": 2, "failed": 1, "": 1}
    assert list(status_counts(checks)) == ["passed", "failed", ""]


def test_totals_line():
    records = [{"test": "t::a", "device": "cpu",
                "checks": [check_dict(), check_dict(status="failed")]},
               {"test": "t::b", "device": "cpu", "checks": []}]
    assert totals_line(records) == "hwopt: 2 test(s) measured on cpu; checks: 1 failed, 1 passed"
    assert totals_line(records[1:], report_only=True) == (
        "hwopt: 1 test(s) measured on cpu; checks: no budgets; report only: budgets did not "
        "fail tests")


def test_old_names_still_importable():
    """Glue and plugins written against the old module keep working."""
    assert report.document is schema.document
    assert report.write_json_atomic is jsonio.write_json_atomic
    assert report.jsonable is jsonio.jsonable
    assert report.JSON_VERSION == schema.FORMAT == 1
