"""Serving a callable under MLPerf LoadGen: the real LoadGen's runs and the parsing of its logs.

The runs need ``mlperf_loadgen`` (``pip install mlcommons-loadgen``) and are skipped without
it; the argument checks and the parsing of LoadGen's files run everywhere. The fixture
texts are excerpts of files LoadGen 6.0.17 wrote in real runs of this module (a 1 ms
sleep in SingleStream for 0.5 s; a 5 ms sleep in Server at 50 qps with a 2 ms bound).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_hwopt.backends.loadgen import (
    SCENARIOS,
    LoadGenSampleError,
    build_run,
    detail_values,
    early_stopping_min_queries,
    invalid_reason,
    run_loadgen,
    run_window_s,
    trace_latencies_ns,
)

needs_loadgen = pytest.mark.skipif(
    importlib.util.find_spec("mlperf_loadgen") is None,
    reason="mlperf_loadgen is not installed (pip install mlcommons-loadgen): these tests "
           "run the real LoadGen")

SAMPLES = list(range(16))

SINGLE_STREAM_SUMMARY = """\
================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : SingleStream
Mode     : PerformanceOnly
90.0th percentile latency (ns) : 1134207
Result is : VALID
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: Yes
Early Stopping Result:
 * Processed at least 64 queries (438).
 * Would discard 28 highest latency queries.
 * Early stopping 90.0th percentile estimate: 1152081
 * Not enough queries processed for 99.0th percentile
 early stopping estimate (would need to process at
 least 662 total queries).

================================================
Additional Stats
================================================
QPS w/ loadgen overhead         : 873.98
QPS w/o loadgen overhead        : 880.71

Min latency (ns)                : 1036244
Max latency (ns)                : 3599911
Mean latency (ns)               : 1135442
50.00 percentile latency (ns)   : 1103750
90.00 percentile latency (ns)   : 1134207
95.00 percentile latency (ns)   : 1187096
97.00 percentile latency (ns)   : 1279529
99.00 percentile latency (ns)   : 2098304
99.90 percentile latency (ns)   : 3599911

================================================
Test Parameters Used
================================================
samples_per_query : 1
target_qps : 1000
"""

SERVER_SUMMARY = """\
================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Server
Mode     : PerformanceOnly
Completed samples per second    : 46.17
Result is : INVALID
  Performance constraints satisfied : NO
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: NO
Recommendations:
 * Reduce target QPS to improve latency.
Early Stopping Result:
 * Run unsuccessful.
 * Processed 100 queries.
 * Would need to run at least 12471 more queries,
 with the run being successful if every additional
 query were under latency.

================================================
Additional Stats
================================================
Scheduled samples per second : 46.28
Min latency (ns)                : 5264766
Max latency (ns)                : 52957390
Mean latency (ns)               : 8276255
50.00 percentile latency (ns)   : 5394577
90.00 percentile latency (ns)   : 12308589
95.00 percentile latency (ns)   : 29569946
97.00 percentile latency (ns)   : 48464948
99.00 percentile latency (ns)   : 52957390
99.90 percentile latency (ns)   : 52957390

================================================
Test Parameters Used
================================================
samples_per_query : 1
target_qps : 50
target_latency (ns): 2000000
"""


def _mllog(key: str, value: str) -> str:
    return (f':::MLLOG {{"key": "{key}", "value": {value}, "time_ms": 2152.734733, '
            '"namespace": "mlperf::logging", "event_type": "POINT_IN_TIME", "metadata": '
            '{"is_error": false, "is_warning": false, "file": "results.cc", "line_no": 712, '
            '"pid": 15226, "tid": 15226}}')


SERVER_DETAIL = "\n".join([
    _mllog("effective_target_latency_percentile", "0.99"),
    _mllog("power_begin", '"11-29-2026 18:31:49.234"'),
    _mllog("power_end", '"11-29-2026 18:31:51.378"'),
    _mllog("result_query_count", "100"),
    _mllog("result_overlatency_query_count", "100"),
    _mllog("num_errors", "0"),
])

TRACE = """\
{"traceEvents":[
{"name":"Waiting","ph":"X","pid":15226,"tid":15226,"ts":125.970,"dur":0.491,"args":{}},
{"name":"LogDetail","ph":"X","pid":15226,"tid":15234,"ts":10467.308,"dur":5.811,"args":{"key":""loadgen_version""}},
{"name":"Sample","cat":"default","ph":"b","pid":15226,"id":1,"ts":18097.434,"args":{"sample_seq":1,"query_seq":1,"sample_idx":5,"issue_start_ns":90932,"complete_ns":5928989}},
{"name":"Sample","cat":"default","ph":"e", "pid":15226,"id":1,"ts":24026.423},
{"name":"Sample","cat":"default","ph":"b","pid":15226,"id":0,"ts":126.227,"args":{"sample_seq":0,"query_seq":0,"sample_idx":12,"issue_start_ns":200,"complete_ns":5287775}},
{"name":"Sample","cat":"default","ph":"e", "pid":15226,"id":0,"ts":5414.002},
{"name":"LastTrace"}
]}
"""


# ---------------------------------------------------------------------------- arguments


def test_unknown_scenario_lists_the_ones_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MultiStream") as info:
        run_loadgen(print, scenario="MultiStream", samples=SAMPLES, outdir=tmp_path)
    assert all(name in str(info.value) for name in SCENARIOS)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scenario": "Server"}, "needs target_qps"),
    ({"scenario": "Offline", "target_latency_ms": 5.0}, "Server latency bound"),
    ({"scenario": "SingleStream", "samples": []}, "samples is empty"),
    ({"scenario": "SingleStream", "min_duration_s": 0}, "min_duration_s=0"),
    ({"scenario": "Server", "target_qps": -1.0}, "target_qps=-1.0"),
])
def test_settings_loadgen_cannot_run_are_refused(tmp_path: Path, kwargs: dict[str, object],
                                                  message: str) -> None:
    arguments: dict[str, object] = {"samples": SAMPLES, **kwargs}
    with pytest.raises(ValueError, match=message):
        run_loadgen(print, outdir=tmp_path, **arguments)  # type: ignore[arg-type]


def test_missing_loadgen_says_what_to_install(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)
    with pytest.raises(ImportError, match=r'pytest-hwopt\[loadgen\]'):
        run_loadgen(print, scenario="SingleStream", samples=SAMPLES, outdir=tmp_path)


# ---------------------------------------------------------------------------- parsing


def test_single_stream_summary_figures() -> None:
    run = build_run("SingleStream", SINGLE_STREAM_SUMMARY)
    assert run.valid and run.loadgen_result == "VALID" and run.reason == ""
    assert (run.qps, run.qps_field) == (873.98, "QPS w/ loadgen overhead")
    assert (run.median_ms, run.p90_ms, run.p95_ms) == (1.10375, 1.134207, 1.187096)
    assert (run.p97_ms, run.p99_ms, run.p999_ms) == (1.279529, 2.098304, 3.599911)
    assert (run.min_ms, run.max_ms, run.mean_ms) == (1.036244, 3.599911, 1.135442)
    assert run.early_stopping[0] == "Processed at least 64 queries (438)."
    assert run.early_stopping[3].endswith("(would need to process at least 662 total queries).")
    assert run.early_stopping_ms == {90.0: 1.152081}
    assert run.min_queries_for == {90.0: 64, 99.0: 662}
    assert run.min_queries_source == {90.0: "summary", 99.0: "summary"}
    assert run.queries is None and run.duration_s is None and run.latencies_ms == ()


def test_server_invalid_reason_and_detail_log() -> None:
    run = build_run("Server", SERVER_SUMMARY, SERVER_DETAIL, TRACE)
    assert run.loadgen_result == "INVALID" and not run.valid
    assert run.reason.splitlines() == [
        "Performance constraints satisfied : NO",
        "Early stopping satisfied: NO",
        "* Reduce target QPS to improve latency.",
        "* Run unsuccessful.",
        "* Processed 100 queries.",
        "* Would need to run at least 12471 more queries, with the run being successful "
        "if every additional query were under latency.",
    ]
    assert (run.qps, run.qps_field) == (46.17, "Completed samples per second")
    assert (run.queries, run.samples, run.errors) == (100, 100, 0)
    assert run.duration_s == pytest.approx(2.144)
    assert run.min_queries_for == {99.0: 12571}
    assert run.min_queries_source == {99.0: "summary"}
    assert run.latencies_ms == (5.287775, 5.928989)


def test_computed_early_stopping_counts_match_loadgen_s_own() -> None:
    # LoadGen's summaries: 64 (90th, one over-bound query), 662 (99th, one), 459 (99th
    # none: a Server run of 100 queries "would need to run at least 359 more"), and
    # 100 + 12471 with all 100 Server queries over the bound
    assert early_stopping_min_queries(1, 0.9) == 64
    assert early_stopping_min_queries(1, 0.99) == 662
    assert early_stopping_min_queries(0, 0.99) == 459
    assert early_stopping_min_queries(100, 0.99) == 12571
    with pytest.raises(ValueError, match="percentile"):
        early_stopping_min_queries(0, 1.0)


def test_server_count_is_computed_when_the_run_had_enough() -> None:
    summary = SERVER_SUMMARY.replace("Result is : INVALID", "Result is : VALID").replace(
        " * Run unsuccessful.\n * Processed 100 queries.\n * Would need to run at least 12471 "
        "more queries,\n with the run being successful if every additional\n query were under "
        "latency.\n", " * Run successful.\n")
    detail = SERVER_DETAIL.replace('"result_overlatency_query_count", "value": 100',
                                   '"result_overlatency_query_count", "value": 1')
    run = build_run("Server", summary, detail)
    assert run.early_stopping == ("Run successful.",)
    assert run.min_queries_for == {99.0: 662}
    assert run.min_queries_source == {99.0: "computed"}


def test_log_pieces() -> None:
    assert invalid_reason(SINGLE_STREAM_SUMMARY) == ""
    detail = detail_values(SERVER_DETAIL + "\nnot a log line\n:::MLLOG {broken")
    assert detail["result_query_count"] == 100
    assert run_window_s(detail) == pytest.approx(2.144)
    assert run_window_s({}) is None
    assert trace_latencies_ns(TRACE) == [5287775, 5928989]
    with pytest.raises(ValueError, match="Result is"):
        build_run("Server", "no summary here")


# ---------------------------------------------------------------------------- real LoadGen


def _sleep_1ms(sample: object) -> None:
    time.sleep(0.001)


@needs_loadgen
def test_single_stream_1ms(tmp_path: Path) -> None:
    run = run_loadgen(_sleep_1ms, scenario="SingleStream", samples=SAMPLES,
                      min_duration_s=0.5, outdir=tmp_path)
    assert run.scenario == "SingleStream" and run.qps_field == "QPS w/ loadgen overhead"
    assert run.median_ms is not None and 1.0 <= run.median_ms < 10
    assert run.min_ms is not None and run.min_ms >= 1.0
    assert run.queries is not None and run.queries == len(run.latencies_ms) >= 25
    # LoadGen's median is its sorted latencies at index n * 0.5: the trace holds the same
    ordered = sorted(run.latencies_ms)
    assert ordered[int(len(ordered) * 0.5)] == run.median_ms
    assert run.duration_s is not None and run.duration_s >= 0.5
    assert run.qps == pytest.approx(run.queries / run.duration_s, rel=0.2)
    assert run.min_queries_for[90.0] == 64 and run.min_queries_for[99.0] == 662
    assert run.valid == (run.reason == "")


@needs_loadgen
def test_server_valid_or_invalid_as_loadgen_decides(tmp_path: Path) -> None:
    threads: set[str] = set()
    run = run_loadgen(lambda sample: threads.add(threading.current_thread().name),
                      scenario="Server", target_qps=1000, samples=SAMPLES,
                      min_duration_s=0.5, outdir=tmp_path)
    assert threads == {"hwopt-loadgen-sut"}
    assert run.loadgen_result in ("VALID", "INVALID")
    assert run.valid == (run.reason == "")
    assert run.qps_field == "Completed samples per second" and run.qps is not None
    assert run.queries is not None and 300 <= run.queries <= 800
    assert run.min_queries_for[99.0] >= 459
    assert len(run.latencies_ms) == run.queries


@needs_loadgen
def test_server_too_few_queries_for_early_stopping(tmp_path: Path) -> None:
    run = run_loadgen(lambda sample: None, scenario="Server", target_qps=100, samples=SAMPLES,
                      min_duration_s=0.3, min_queries=10, outdir=tmp_path)
    assert run.loadgen_result == "INVALID"
    assert "Early stopping satisfied: NO" in run.reason
    assert "Would need to run at least" in run.reason
    assert run.queries is not None and run.min_queries_for[99.0] >= 459 > run.queries


@needs_loadgen
def test_server_fn_slower_than_the_latency_bound(tmp_path: Path) -> None:
    run = run_loadgen(lambda sample: time.sleep(0.005), scenario="Server", target_qps=100,
                      target_latency_ms=1, samples=SAMPLES, min_duration_s=0.3,
                      min_queries=20, outdir=tmp_path)
    assert run.loadgen_result == "INVALID"
    assert "Performance constraints satisfied : NO" in run.reason
    assert "Reduce target QPS to improve latency." in run.reason
    assert run.median_ms is not None and run.median_ms >= 5


@needs_loadgen
def test_offline_answers_one_sample_at_a_time(tmp_path: Path) -> None:
    run = run_loadgen(_sleep_1ms, scenario="Offline", target_qps=2000, samples=SAMPLES,
                      min_duration_s=0.3, outdir=tmp_path)
    assert run.valid, run.reason
    assert run.qps_field == "Samples per second"
    # one worker, each sample at least 1 ms: fewer than 1000 samples a second
    assert run.qps is not None and run.qps < 1000
    assert run.queries == 1 and run.samples == len(run.latencies_ms) >= 600
    assert run.early_stopping == () and run.min_queries_for == {}
    # each sample completes on its own: latencies grow through the one query
    assert run.latencies_ms[-1] > run.latencies_ms[0]


@needs_loadgen
def test_offline_expected_qps_too_low(tmp_path: Path) -> None:
    run = run_loadgen(_sleep_1ms, scenario="Offline", target_qps=100, samples=SAMPLES,
                      min_duration_s=0.3, outdir=tmp_path)
    assert run.loadgen_result == "INVALID"
    assert "Min duration satisfied : NO" in run.reason
    assert "Increase expected QPS" in run.reason


@needs_loadgen
@pytest.mark.parametrize("scenario", ["SingleStream", "Server"])
def test_fn_raising_names_the_sample(tmp_path: Path, scenario: str) -> None:
    calls: list[int] = []

    def fn(sample: int) -> None:
        calls.append(sample)
        if sample == 3:
            raise ValueError("sample three is bad")

    with pytest.raises(LoadGenSampleError, match=r"samples\[3\]: ValueError: sample three") \
            as info:
        run_loadgen(fn, scenario=scenario, samples=list(range(8)),
                    target_qps=200 if scenario == "Server" else None,
                    min_duration_s=0.3, min_queries=10, outdir=tmp_path)
    assert info.value.index == 3
    assert isinstance(info.value.__cause__, ValueError)
    assert calls[-1] == 3  # not called again after the failure
    assert info.value.run is not None and info.value.run.queries is not None
