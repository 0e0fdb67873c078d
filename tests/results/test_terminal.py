"""Unit tests for pytest_hwopt.results.terminal: value formatting, the summary table, the JSON document."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_hwopt.results import terminal as report
from pytest_hwopt.core.verdicts import Check
from pytest_hwopt.results.terminal import (
    SUMMARY_HEADER,
    document,
    format_value,
    summary_rows,
    table,
    write_json_atomic,
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
    base = Check("speedup", "fused", "naive", 2.0, 3.0, 2.5, 3.5, "x", "passed", "msg",
                 metric="min").to_dict()
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
        check_dict(status="inconclusive", passed=False),
    ]}
    assert summary_rows([rec]) == [
        ["t.py::test_a", "speedup vs naive", "fused", "3.00x", "[2.50x, 3.50x]", ">= 2.00x",
         "passed", ""],
        ["t.py::test_a", "latency p95", "fused", "4 ms", "[3.5 ms, 4.5 ms]", "<= 5 ms",
         "passed", ""],
        ["t.py::test_a", "accuracy vs naive", "fused", "2e-05", "", "atol 0.0001", "passed", ""],
        ["t.py::test_a", "cold start", "fused", "-", "", "-", "skipped", ""],
        ["t.py::test_a", "throughput", "fused", "1200 items/s", "[900 items/s, 1500 items/s]",
         ">= 1000 items/s", "inconclusive (pass)", ""],
        ["t.py::test_a", "speedup vs naive", "fused", "3.00x", "[2.50x, 3.50x]", ">= 2.00x",
         "inconclusive (fail)", ""],
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


def test_document_shape():
    records = [
        {"test": "t::a", "device": "cpu", "results": [{"variant": "naive", "median_ms": 1.0}],
         "checks": [check_dict()]},
        {"test": "t::b", "results": [{"variant": "x"}, {"variant": "y"}]},
    ]
    doc = document(records, {"python": "3.12"}, "1.2.3")
    assert set(doc) == {"version", "format", "environment", "tests", "results", "checks"}
    assert doc["version"] == "1.2.3"
    assert doc["format"] == report.JSON_VERSION
    assert doc["environment"] == {"python": "3.12"}
    assert doc["tests"] == [{"test": "t::a", "device": "cpu"}, {"test": "t::b"}]
    assert [(r["test"], r["variant"]) for r in doc["results"]] == [("t::a", "naive"),
                                                                  ("t::b", "x"), ("t::b", "y")]
    assert len(doc["checks"]) == 1
    assert doc["checks"][0]["test"] == "t::a"
    assert doc["checks"][0]["kind"] == "speedup"
    json.dumps(doc)  # JSON-ready


def test_document_check_test_is_the_records():
    """A check's own (empty) 'test' field is replaced by its record's test id."""
    doc = document([{"test": "t::a", "checks": [check_dict(test="")]}], {}, "0")
    assert doc["checks"][0]["test"] == "t::a"


def test_document_does_not_modify_records():
    rec = {"test": "t::a", "results": [{"variant": "v"}], "checks": [check_dict()]}
    document([rec], {}, "0")
    assert rec["results"] == [{"variant": "v"}]
    assert "test" not in rec["results"][0]


# --- write_json_atomic ----------------------------------------------------------------------


def test_write_json_atomic_writes_valid_json(tmp_path):
    data = {"a": [1, 2.5, None], "b": {"c": "d"}, "t": (1, 2), "s": {3}, "p": Path("/x")}
    target = write_json_atomic(tmp_path / "out" / "report.json", data)
    assert target == tmp_path / "out" / "report.json"
    text = target.read_text()
    assert text.endswith("\n")
    assert json.loads(text) == {"a": [1, 2.5, None], "b": {"c": "d"}, "t": [1, 2], "s": [3],
                                "p": "/x"}
    assert os.listdir(tmp_path / "out") == ["report.json"]


def test_write_json_atomic_falls_back_to_repr(tmp_path):
    class Odd:
        def __repr__(self):
            return "<odd>"

    target = write_json_atomic(tmp_path / "r.json", {"odd": Odd()})
    assert json.loads(target.read_text()) == {"odd": "<odd>"}


def test_write_json_atomic_replaces_existing(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old contents, not JSON")
    write_json_atomic(target, {"new": True})
    assert json.loads(target.read_text()) == {"new": True}
    assert os.listdir(tmp_path) == ["r.json"]


def test_write_json_atomic_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    target.write_text('{"old": 1}')
    with pytest.raises(TypeError):
        write_json_atomic(target, {("tuple", "key"): 1})  # JSON keys must be strings
    assert json.loads(target.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_write_json_atomic_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = write_json_atomic(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644
