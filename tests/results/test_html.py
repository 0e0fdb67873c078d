"""Unit tests for pytest_hwopt.results.html: the self-contained HTML page of a results document."""

from __future__ import annotations

import copy
import re
import sys
from html.parser import HTMLParser

import pytest

pytest.importorskip("plotly", reason="the HTML report needs plotly (pytest-hwopt[html])")

from pytest_hwopt.results import html as html_report


def _variant(test, name, median, **extra):
    samples = [median * f for f in (0.9, 0.95, 1.0, 1.0, 1.05, 1.1, 1.3, 0.97)]
    return {"test": test, "variant": name, "median_ms": median, "p95_ms": median * 1.2,
            "samples": samples, "rounds_ms": samples[:4], "first_call_ms": median * 3,
            "prepare_s": None, **extra}


def _check(test, kind, variant, vs, budget, measured, low, high, unit, status, message,
           metric=""):
    return {"test": test, "kind": kind, "variant": variant, "vs": vs, "budget": budget,
            "measured": measured, "low": low, "high": high, "unit": unit, "status": status,
            "passed": status in ("passed", "reported", "skipped"), "message": message,
            "metric": metric, "budget_key": "", "detail": {}}


PAIR = "test_demo.py::test_pair"
COPY = "test_demo.py::test_copy"
GEMM = "test_demo.py::test_gemm[<script>alert(1)</script>]"
PEAKS = {"peak_gbs": 40.0, "peak_tflops": 0.2}


@pytest.fixture
def doc():
    return {
        "version": "0.1.0", "format": 1,
        "environment": {"python": "3.11", "device": "cpu", "device_name": "Test CPU",
                        "versions": {"numpy": "2.4.6"}, "cpu_flags": ["avx2", "fma"],
                        "peak": {"gbs": 40.0, "tflops": {"fp32": 0.2}}},
        "tests": [
            {"test": PAIR, "device": "cpu", "rounds": 8, "stopped": "decided",
             "elapsed_s": 0.2, "contention": {"contended": True, "other_busy_cores": 1.2,
                                              "steal_fraction": 0.0},
             "telemetry": {}, "notes": {"gain_ratio": 9.87654, "label": "a&b"}},
            {"test": COPY, "device": "cpu", "rounds": 8, "stopped": "min rounds",
             "contention": {}, "telemetry": {}, "notes": {}},
            {"test": GEMM, "device": "cpu", "rounds": 5, "stopped": "decided",
             "contention": {}, "telemetry": {}, "notes": {}},
        ],
        "results": [
            _variant(PAIR, "slow", 8.0),
            _variant(PAIR, "fast", 0.8, prepare_s=0.25),
            _variant(COPY, "copy", 2.0, bytes=6.7e7, achieved_gbs=33.5, achieved_tflops=0.0,
                     achieved_intensity=0.0, roofline_fraction=0.84, **PEAKS),
            _variant(GEMM, "gemm", 30.0, bytes=1.2e7, flops=2.1e9, achieved_gbs=0.4,
                     achieved_tflops=0.07, achieved_intensity=170.0, roofline_fraction=0.35,
                     **PEAKS),
        ],
        "checks": [
            _check(PAIR, "speedup", "fast", "slow", 2.0, 10.0, 8.1, 12.2, "x", "passed",
                   "speedup of fast vs slow: 10.00x (95% CI 8.10-12.20) >= 2.0x"),
            _check(PAIR, "latency", "fast", None, 0.5, 0.96, 0.9, 1.1, "ms", "failed",
                   "p95 latency of fast: 0.96 ms > 0.5 ms", metric="p95_ms"),
            _check(COPY, "roofline", "copy", None, 0.1, 0.84, 0.84, 0.84, "", "passed",
                   "roofline fraction of copy: 0.84 >= 0.1"),
            _check(GEMM, "speedup", "gemm", "ref", None, None, None, None, "x", "skipped",
                   "speedup skipped: <b>not measured</b>"),
        ],
    }


class _Checker(HTMLParser):
    """Tags opened and closed in order, scripts' src, and the visible text."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source",
            "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.script_src: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script" and dict(attrs).get("src"):
            self.script_src.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] not in ("script", "style"):
            self.text.append(data)


def _parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    return checker


def test_page_is_well_formed_and_self_contained(doc):
    page = html_report.render(doc)
    assert page.startswith("<!DOCTYPE html>")
    parsed = _parse(page)
    assert parsed.errors == []
    assert parsed.stack == []
    assert parsed.script_src == []  # plotly.js is inline, nothing is fetched
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?https?://", page, re.I)
    assert len(page) > 1_000_000  # plotly.js itself is in the page


def test_page_shows_every_test_and_check_message(doc):
    page = html_report.render(doc)
    text = "".join(_parse(page).text)
    for test in (PAIR, COPY, GEMM):
        assert test in text
    for check in doc["checks"]:
        assert check["message"] in text
    # the summary row of a check, formatted as in the terminal table
    assert "speedup vs slow" in text and "10.00x" in text and "[8.10x, 12.20x]" in text
    assert ">= 2.00x" in text and "<= 0.5 ms" in text
    # notes and environment
    assert "gain_ratio" in text and "9.877" in text and "a&b" in text
    assert "versions.numpy" in text and "avx2, fma" in text
    assert "contended" in text


def test_status_classes_colour_the_rows(doc):
    page = html_report.render(doc)
    for status in ("passed", "failed", "skipped"):
        assert re.search(rf'<tr class="status-{status}[ "]', page), status
    # the failed latency check's row and its message line
    assert re.search(r'<tr class="status-failed msg"><td class="message" colspan="7">'
                     r"p95 latency of fast", page)
    assert "1 failed" in page and "2 passed" in page


def test_text_is_escaped(doc):
    page = html_report.render(doc)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>not measured</b>" not in page
    # every <script> in the page is one of the report's own
    opened = re.findall(r"<script\b[^>]*>", page)
    assert all(tag == "<script>" or tag.startswith('<script type="application/json" id="plot-')
               for tag in opened)
    assert page.count("<script") == page.count("</script>")


def test_charts_present(doc):
    page = html_report.render(doc)
    for pid in ("plot-speedups", "plot-latency", "plot-cold-start", "plot-roofline"):
        assert f'<div class="hwopt-plot" id="{pid}">' in page
        assert f'id="{pid}-data"' in page
    assert "hwoptRendered" in page and "hwoptErrors" in page
    # the bytes-only copy is listed but cannot sit on a log-log chart
    assert "1 variant(s) declared only bytes or only FLOPs" in page
    assert "67 MB" in page and "2.1 GFLOP" in page


def test_empty_document():
    page = html_report.render({})
    parsed = _parse(page)
    assert parsed.errors == [] and parsed.stack == []
    assert "No tests were measured." in page
    assert "no roofline data" in page
    assert len(page) < 100_000  # no chart, so no plotly.js
    assert 'class="hwopt-plot"' not in page
    assert "hwoptRendered" in page  # the page still says it finished


def test_document_without_results():
    doc = {"version": "0.1.0", "format": 1, "environment": {"python": "3.11"},
           "tests": [], "results": [], "checks": []}
    page = html_report.render(doc)
    assert _parse(page).errors == []
    assert "No speedup checks with a measurement." in page
    assert "No per-call samples in the document." in page
    assert "python" in page


def test_document_without_roofline_data(doc):
    doc = copy.deepcopy(doc)
    doc["results"] = [r for r in doc["results"] if r["test"] == PAIR]
    doc["checks"] = [c for c in doc["checks"] if c["test"] == PAIR]
    page = html_report.render(doc)
    assert _parse(page).errors == []
    assert 'id="plot-roofline"' not in page
    assert "no roofline data" in page
    assert 'id="plot-speedups"' in page and 'id="plot-latency"' in page


def test_roofline_without_a_plottable_point(doc):
    doc = copy.deepcopy(doc)
    doc["results"] = [r for r in doc["results"] if r["test"] != GEMM]
    page = html_report.render(doc)
    assert 'id="plot-roofline"' not in page
    assert "nothing can be placed on a roofline chart" in page
    assert "test_copy" in page


def test_a_test_without_budgets_lists_its_variants(doc):
    doc = copy.deepcopy(doc)
    doc["checks"] = []
    page = html_report.render(doc)
    text = "".join(_parse(page).text)
    assert "measured" in text and "p95 9.6 ms" in text
    assert "no budgets" in text


def test_cold_start_keeps_tests_that_built_something(doc):
    page = html_report.render(doc)
    data = page.split('id="plot-cold-start-data">', 1)[1].split("</script>", 1)[0]
    assert "test_pair" in data and "test_copy" not in data
    assert "variant(s) of tests that built nothing are left out" in page


def test_write_html(doc, tmp_path):
    target = html_report.write_html(tmp_path / "sub" / "report.html", doc)
    assert target.read_text(encoding="utf-8") == html_report.render(doc)
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_missing_plotly_says_what_to_install(doc, monkeypatch):
    for name in list(sys.modules):
        if name == "plotly" or name.startswith("plotly."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(RuntimeError, match=r"pip install plotly.*pytest-hwopt\[html\]"):
        html_report.render(doc)


def test_module_imports_without_plotly():
    import subprocess

    code = ("import sys; sys.modules['plotly'] = None; import pytest_hwopt.results.html; "
            "print('plotly' in sys.modules and sys.modules['plotly'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_labels_use_the_tests_own_names():
    from pytest_hwopt.results.html import names_of_tests

    document = {"tests": [{"test": "t.py::test_op[ns::op]", "name": "test_op[ns::op]"}],
                "results": [{"test": "t.py::TestA::test_b[a::b]"}], "checks": []}
    assert names_of_tests(document) == {"t.py::test_op[ns::op]": "test_op[ns::op]",
                                    "t.py::TestA::test_b[a::b]": "test_b[a::b]"}
