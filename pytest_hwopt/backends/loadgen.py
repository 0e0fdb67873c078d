"""An in-process callable served under MLPerf LoadGen (``mlcommons-loadgen``, ``mlperf_loadgen``).

:func:`run_loadgen` wraps ``fn(sample)`` as a LoadGen system under test (SUT), runs one
performance-only test in the SingleStream, Server or Offline scenario and reads the result
back from the files LoadGen writes into ``outdir``; none of the figures comes from our
own clocks:

- ``mlperf_log_summary.txt``: the validity (``Result is : VALID``), the reasons of an
  INVALID run, the throughput, the latency statistics (ns) and the early-stopping block;
- ``mlperf_log_detail.txt`` (``:::MLLOG {json}`` lines): the number of queries issued
  (``result_query_count``), the over-latency count of a Server run
  (``result_overlatency_query_count``), the target percentile
  (``effective_target_latency_percentile``), the run window (``power_begin`` and
  ``power_end``, ms resolution) and the error count (``num_errors``);
- ``mlperf_log_trace.json`` (LoadGen's trace, on when ``latencies=True``): each sample's
  latency, the ``complete_ns`` argument of its ``"Sample"`` event, which LoadGen records
  as completion minus scheduled time, the same figure its summary statistics are made of
  (``loadgen/loadgen.cc``, ``ResponseDelegateDetailed::SampleComplete``).

Threads: in SingleStream LoadGen issues the next query only once the previous one is
complete, so ``fn`` runs on LoadGen's issuing thread and nothing waits behind it. In
Server and Offline the SUT only queues the issued samples; one worker thread answers
them first in, first out, one at a time, and completes each sample on its own with
``QuerySamplesComplete``. So ``fn`` never runs on two threads at once (it need not be
thread-safe) and a Server latency includes the time a sample waited behind earlier ones,
as it would in front of a single model instance.

Importing this module does not import ``mlperf_loadgen``.
"""

from __future__ import annotations

import json
import math
import queue
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from pathlib import Path
from typing import Any, Final

#: the scenarios :func:`run_loadgen` runs (LoadGen's ``TestScenario`` names)
SCENARIOS: Final = ("SingleStream", "Server", "Offline")

#: confidence of LoadGen's early-stopping rule, with tolerance 0 (both hard-coded in
#: ``PerformanceSummary::EarlyStopping``, ``loadgen/results.cc``)
EARLY_STOPPING_CONFIDENCE: Final = 0.99

#: the percentile of LoadGen's second SingleStream early-stopping estimate (hard-coded
#: ``multi_stream_percentile`` in ``PerformanceSummary::EarlyStopping``)
SINGLE_STREAM_SECOND_PERCENTILE: Final = 0.99

#: LoadGen's default target percentiles (``TestSettings``), used when the detail log lacks one
DEFAULT_TARGET_PERCENTILE: Final = {"SingleStream": 0.9, "Server": 0.99}

SUMMARY_FILE: Final = "mlperf_log_summary.txt"
DETAIL_FILE: Final = "mlperf_log_detail.txt"
TRACE_FILE: Final = "mlperf_log_trace.json"

#: the summary line each scenario's throughput is read from (``qps`` of :class:`LoadGenRun`)
QPS_FIELDS: Final = {
    # (n - 1) / time the last query was issued
    "SingleStream": ("QPS w/ loadgen overhead",),
    # (n - 1) / time all samples were done; older LoadGen prints the scheduled rate only
    "Server": ("Completed samples per second", "Scheduled samples per second"),
    # samples / time the last sample completed
    "Offline": ("Samples per second",),
}

_NS_PER_MS: Final = 1e6
_POWER_TIME_FORMAT: Final = "%m-%d-%Y %H:%M:%S.%f"
_KEY_VALUE = re.compile(r"^\s*([^\s*:][^:]*?)\s*:\s*(.*?)\s*$")
_PERCENTILE_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?) percentile latency \(ns\)\s*:\s*(\d+)")
_TARGET_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)th percentile latency \(ns\)\s*:")
_ESTIMATE = re.compile(r"Early stopping (\d+(?:\.\d+)?)th percentile estimate: (\d+)")
_SS_PROCESSED = re.compile(r"Processed at least (\d+) queries")
_SS_NEED = re.compile(r"Need to process at least (\d+) queries for early stopping")
_SS_SECOND_NEED = re.compile(r"for (\d+(?:\.\d+)?)th percentile early stopping estimate "
                             r"\(would need to process at least (\d+) total queries\)")
_SERVER_PROCESSED = re.compile(r"Processed (\d+) queries")
_SERVER_MORE = re.compile(r"Would need to run at least (\d+) more queries")
_TRACE_SAMPLE = re.compile(r'^\{"name":"Sample".*"ph":"b".*"sample_seq":(\d+).*'
                           r'"complete_ns":(\d+)')


class LoadGenSampleError(RuntimeError):
    """``fn`` raised on a sample during a LoadGen run.

    ``index`` is the sample's index in ``samples``; the exception ``fn`` raised is the
    ``__cause__`` (and ``sample_error``); ``run`` is the run as LoadGen recorded it (the
    samples after the failure were completed unanswered), or None when its logs could not
    be read.
    """

    def __init__(self, index: int, sample_error: BaseException, run: LoadGenRun | None) -> None:
        super().__init__(f"fn raised on samples[{index}]: "
                         f"{type(sample_error).__name__}: {sample_error} (the system under test "
                         "stopped answering there; LoadGen's later samples were completed "
                         "unanswered)")
        self.index = index
        self.sample_error = sample_error
        self.run = run


@dataclass(frozen=True)
class LoadGenRun:
    """One LoadGen performance run, as LoadGen's own logs in ``outdir`` record it.

    Latencies are in milliseconds (LoadGen logs ns), None where the summary lacks the line.
    ``qps`` is the scenario's throughput line named by ``qps_field`` (:data:`QPS_FIELDS`),
    in samples per second. ``queries`` is LoadGen's ``result_query_count`` (queries issued;
    an Offline run issues one query of ``samples`` samples). ``duration_s`` is LoadGen's
    performance-run window (``power_end - power_begin`` in the detail log, ms resolution).
    ``reason`` is empty for a VALID run; for an INVALID one it holds the summary's failed
    checks (``... satisfied : NO``), its recommendations and, when early stopping failed,
    the early-stopping lines. ``early_stopping`` holds the lines under ``Early Stopping
    Result:`` (wrapped lines joined); ``early_stopping_ms`` their percentile estimates
    (percentile in % -> ms). ``min_queries_for`` maps a percentile (%) to the number of
    queries LoadGen's early stopping needs for it; ``min_queries_source`` says, per
    percentile, whether that number was read from the ``"summary"`` or ``"computed"``
    with :func:`early_stopping_min_queries` (see :func:`min_queries_needed`).
    ``latencies_ms`` is every sample's latency in issue order, from LoadGen's trace (empty
    when the trace was off). ``summary`` holds the summary's ``key : value`` lines as text.
    """

    scenario: str
    loadgen_result: str
    reason: str
    qps: float | None
    qps_field: str
    median_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p97_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    mean_ms: float | None
    min_ms: float | None
    max_ms: float | None
    queries: int | None
    samples: int | None
    duration_s: float | None
    errors: int | None
    early_stopping: tuple[str, ...]
    early_stopping_ms: dict[float, float]
    min_queries_for: dict[float, int]
    min_queries_source: dict[float, str]
    latencies_ms: tuple[float, ...] = ()
    summary: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """Whether LoadGen judged the run VALID."""
        return self.loadgen_result == "VALID"


# ---------------------------------------------------------------------------- running


def run_loadgen(fn: Callable[[Any], object], *, scenario: str, samples: Sequence[Any],
                target_qps: float | None = None, target_latency_ms: float | None = None,
                min_duration_s: float = 10, min_queries: int | None = None,
                outdir: Path, latencies: bool = True) -> LoadGenRun:
    """Serve ``fn`` under LoadGen in ``scenario`` and return the run LoadGen recorded.

    ``fn(sample)`` answers one query sample, ``samples[index]`` for the index LoadGen
    issues; its return value is discarded (performance mode checks no answers).
    ``target_qps`` (queries per second) is the Server scenario's ``server_target_qps``
    (required), the Offline ``offline_expected_qps`` and, in SingleStream, sets
    ``single_stream_expected_latency_ns`` to ``1 / target_qps``; the last two only size
    the queries LoadGen generates in advance (too low a figure ends the run before
    ``min_duration_s``, which LoadGen reports as INVALID). ``target_latency_ms`` is the
    Server latency bound (``server_target_latency_ns``; LoadGen's default is 100 ms).
    ``min_duration_s`` (seconds) and ``min_queries`` are LoadGen's ``min_duration_ms`` and
    ``min_query_count`` (LoadGen's default count when None). LoadGen writes its logs into
    ``outdir`` (created if missing); ``latencies=False`` turns its trace off, and with it
    ``latencies_ms``. Any ``audit.config`` is looked for in ``outdir`` only, not in the
    working directory.

    Raises ValueError for a scenario outside :data:`SCENARIOS`, a Server run without
    ``target_qps``, ``target_latency_ms`` outside Server, empty ``samples`` or a
    non-positive figure; ImportError when ``mlperf_loadgen`` is not installed;
    :class:`LoadGenSampleError` when ``fn`` raised (the first exception, with the index).
    """
    check_arguments(scenario, samples, target_qps, target_latency_ms, min_duration_s,
                    min_queries)
    lg = import_loadgen()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    settings = _test_settings(lg, scenario, target_qps, target_latency_ms, min_duration_s,
                              min_queries)
    log_settings = _log_settings(lg, outdir, trace=latencies)
    answerer = _Answerer(lg, fn, samples)
    worker = None if scenario == "SingleStream" else _Worker(answerer)
    issue = answerer.answer_all if worker is None else worker.put_all
    sut = lg.ConstructSUT(issue, _flush)
    qsl = lg.ConstructQSL(len(samples), len(samples), _load_samples, _unload_samples)
    try:
        if worker is not None:
            worker.start()
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings,
                                    str(outdir / "audit.config"))
    finally:
        if worker is not None:
            worker.stop()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if answerer.error is None:
        return read_run(outdir, scenario)
    try:
        run: LoadGenRun | None = read_run(outdir, scenario)
    except (OSError, ValueError):
        run = None
    index, exc = answerer.error
    if not isinstance(exc, Exception):
        raise exc
    raise LoadGenSampleError(index, exc, run) from exc


def check_arguments(scenario: str, samples: Sequence[Any], target_qps: float | None,
                    target_latency_ms: float | None, min_duration_s: float,
                    min_queries: int | None) -> None:
    """Refuse settings :func:`run_loadgen` cannot run, naming them. Raises ValueError."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r}: LoadGen runs here in one of "
                         f"{', '.join(SCENARIOS)}")
    if scenario == "Server" and target_qps is None:
        raise ValueError("scenario='Server' needs target_qps (LoadGen's server_target_qps, "
                         "the Poisson arrival rate in queries per second)")
    if target_latency_ms is not None and scenario != "Server":
        raise ValueError(f"target_latency_ms is the Server latency bound; scenario={scenario!r} "
                         "has none")
    if len(samples) == 0:
        raise ValueError("samples is empty: LoadGen needs at least one sample to issue")
    for name, value in (("target_qps", target_qps), ("target_latency_ms", target_latency_ms),
                        ("min_duration_s", min_duration_s), ("min_queries", min_queries)):
        if value is not None and not value > 0:
            raise ValueError(f"{name}={value!r}: must be positive")


def import_loadgen() -> Any:
    """The ``mlperf_loadgen`` module. Raises ImportError, saying what to install."""
    try:
        return import_module("mlperf_loadgen")
    except ImportError as exc:
        raise ImportError("running under MLPerf LoadGen needs the mlperf_loadgen module: "
                          'pip install "pytest-hwopt[loadgen]" (or pip install '
                          "mlcommons-loadgen)") from exc


def _test_settings(lg: Any, scenario: str, target_qps: float | None,
                   target_latency_ms: float | None, min_duration_s: float,
                   min_queries: int | None) -> Any:
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = max(1, round(min_duration_s * 1000))
    if min_queries is not None:
        settings.min_query_count = min_queries
    if scenario == "Server":
        settings.server_target_qps = target_qps
        if target_latency_ms is not None:
            settings.server_target_latency_ns = round(target_latency_ms * _NS_PER_MS)
    elif target_qps is not None and scenario == "Offline":
        settings.offline_expected_qps = target_qps
    elif target_qps is not None:
        settings.single_stream_expected_latency_ns = round(1e9 / target_qps)
    return settings


def _log_settings(lg: Any, outdir: Path, *, trace: bool) -> Any:
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = trace
    return log_settings


def _flush() -> None:
    """LoadGen's flush: nothing is held back, every queued sample is answered in turn."""


def _load_samples(indices: list[int]) -> None:
    """The samples are already in memory (``samples``); nothing to load."""


def _unload_samples(indices: list[int]) -> None:
    """Nothing was loaded, nothing to unload."""


class _Answerer:
    """Calls ``fn`` on a sample and completes it; after the first exception only completes."""

    def __init__(self, lg: Any, fn: Callable[[Any], object], samples: Sequence[Any]) -> None:
        self._lg = lg
        self._fn = fn
        self._samples = samples
        self._lock = threading.Lock()
        self.error: tuple[int, BaseException] | None = None

    def answer(self, query_id: int, index: int) -> None:
        if self.error is None:
            try:
                self._fn(self._samples[index])
            except BaseException as exc:  # kept, and raised again once LoadGen is done
                with self._lock:
                    if self.error is None:
                        self.error = (index, exc)
        self._lg.QuerySamplesComplete([self._lg.QuerySampleResponse(query_id, 0, 0)])

    def answer_all(self, query_samples: Sequence[Any]) -> None:
        for sample in query_samples:
            self.answer(sample.id, sample.index)


class _Worker:
    """One thread answering queued samples first in, first out."""

    def __init__(self, answerer: _Answerer) -> None:
        self._answerer = answerer
        self._queue: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="hwopt-loadgen-sut",
                                        daemon=True)

    def put_all(self, query_samples: Sequence[Any]) -> None:
        """LoadGen's IssueQuery: queue the samples and return at once."""
        for sample in query_samples:
            self._queue.put((sample.id, sample.index))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            self._answerer.answer(*item)


# ---------------------------------------------------------------------------- reading


def read_run(outdir: Path, scenario: str) -> LoadGenRun:
    """The run LoadGen logged into ``outdir``. Raises OSError when the summary is missing."""
    summary = (outdir / SUMMARY_FILE).read_text()
    detail_path, trace_path = outdir / DETAIL_FILE, outdir / TRACE_FILE
    detail = detail_path.read_text() if detail_path.exists() else ""
    trace = trace_path.read_text() if trace_path.exists() else ""
    return build_run(scenario, summary, detail, trace)


def build_run(scenario: str, summary_text: str, detail_text: str = "",
              trace_text: str = "") -> LoadGenRun:
    """A :class:`LoadGenRun` from the texts of LoadGen's summary, detail log and trace.

    Raises ValueError when the summary has no ``Result is`` line.
    """
    pairs = summary_fields(summary_text)
    if "Result is" not in pairs:
        raise ValueError("not a LoadGen summary: no 'Result is' line")
    detail = detail_values(detail_text)
    percentiles = percentiles_ns(summary_text)
    qps_field, qps = _qps(scenario, pairs)
    early = early_stopping_lines(summary_text)
    needed, sources = min_queries_needed(scenario, early, target_percentile(
        scenario, summary_text, detail), _int_or_none(detail.get("result_overlatency_query_count")))
    queries = _int_or_none(detail.get("result_query_count"))
    per_query = _int_or_none(pairs.get("samples_per_query"))
    return LoadGenRun(
        scenario=scenario,
        loadgen_result=pairs["Result is"],
        reason=invalid_reason(summary_text),
        qps=qps,
        qps_field=qps_field,
        median_ms=_ms(percentiles.get(50.0)),
        p90_ms=_ms(percentiles.get(90.0)),
        p95_ms=_ms(percentiles.get(95.0)),
        p97_ms=_ms(percentiles.get(97.0)),
        p99_ms=_ms(percentiles.get(99.0)),
        p999_ms=_ms(percentiles.get(99.9)),
        mean_ms=_ms(_int_or_none(pairs.get("Mean latency (ns)"))),
        min_ms=_ms(_int_or_none(pairs.get("Min latency (ns)"))),
        max_ms=_ms(_int_or_none(pairs.get("Max latency (ns)"))),
        queries=queries,
        samples=None if queries is None or per_query is None else queries * per_query,
        duration_s=run_window_s(detail),
        errors=_int_or_none(detail.get("num_errors")),
        early_stopping=early,
        early_stopping_ms={p: ns / _NS_PER_MS for p, ns in early_stopping_estimates_ns(early)
                           .items()},
        min_queries_for=needed,
        min_queries_source=sources,
        latencies_ms=tuple(ns / _NS_PER_MS for ns in trace_latencies_ns(trace_text)),
        summary=pairs,
    )


def summary_fields(text: str) -> dict[str, str]:
    """The summary's ``key : value`` lines (first occurrence of a key wins), both stripped.

    Bullet lines (``* ...``) are left out; they are read by :func:`early_stopping_lines`.
    """
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY_VALUE.match(line)
        if match and match.group(2):
            pairs.setdefault(match.group(1), match.group(2))
    return pairs


def percentiles_ns(text: str) -> dict[float, int]:
    """The summary's ``NN.NN percentile latency (ns)`` lines: percentile (%) -> ns."""
    found: dict[float, int] = {}
    for line in text.splitlines():
        match = _PERCENTILE_LINE.match(line)
        if match:
            found.setdefault(float(match.group(1)), int(match.group(2)))
    return found


def _qps(scenario: str, pairs: Mapping[str, str]) -> tuple[str, float | None]:
    for name in QPS_FIELDS.get(scenario, ()):
        if name in pairs:
            return name, float(pairs[name])
    return "", None


def invalid_reason(text: str) -> str:
    """Why LoadGen judged the run INVALID, from its summary; empty for a VALID run.

    The lines are the failed checks (``Min duration satisfied : NO``, ``Performance
    constraints satisfied : NO``, ...), the bullets under ``Recommendations:`` and, when
    ``Early stopping satisfied: NO``, the early-stopping lines (LoadGen prints no
    recommendation for that check).
    """
    if summary_fields(text).get("Result is") != "INVALID":
        return ""
    lines = text.splitlines()
    reasons = [line.strip() for line in lines if re.search(r"satisfied\s*:\s*NO\s*$", line)]
    reasons += [f"* {item}" for item in _block(lines, "Recommendations:")]
    if any(line.strip().startswith("Early stopping satisfied") and line.strip().endswith("NO")
           for line in lines):
        reasons += [f"* {item}" for item in early_stopping_lines(text)]
    return "\n".join(reasons)


def early_stopping_lines(text: str) -> tuple[str, ...]:
    """The bullets under ``Early Stopping Result:``, each with its wrapped lines joined."""
    return tuple(_block(text.splitlines(), "Early Stopping Result:"))


def _block(lines: Sequence[str], heading: str) -> list[str]:
    """The ``*`` bullets right under ``heading`` (up to the next heading or blank line)."""
    items: list[str] = []
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == heading) + 1
    except StopIteration:
        return items
    for line in lines[start:]:
        stripped = line.strip()
        if not stripped or stripped.startswith("=") or not line.startswith(" "):
            break
        if stripped.startswith("*"):
            items.append(stripped.lstrip("* ").strip())
        elif items:
            items[-1] = f"{items[-1]} {stripped}"
    return items


def early_stopping_estimates_ns(lines: Sequence[str]) -> dict[float, int]:
    """``Early stopping NN.Nth percentile estimate: X`` bullets: percentile (%) -> ns."""
    found: dict[float, int] = {}
    for line in lines:
        match = _ESTIMATE.search(line)
        if match:
            found[float(match.group(1))] = int(match.group(2))
    return found


def target_percentile(scenario: str, summary_text: str, detail: Mapping[str, Any]) -> float:
    """The scenario's target latency percentile as a fraction: the detail log's
    ``effective_target_latency_percentile``, else the summary's ``NNth percentile latency``
    line, else LoadGen's default (:data:`DEFAULT_TARGET_PERCENTILE`; 0 for Offline)."""
    value = detail.get("effective_target_latency_percentile")
    if isinstance(value, (int, float)) and 0 < value < 1:
        return float(value)
    for line in summary_text.splitlines():
        match = _TARGET_LINE.match(line)
        if match:
            return float(match.group(1)) / 100
    return DEFAULT_TARGET_PERCENTILE.get(scenario, 0.0)


def min_queries_needed(scenario: str, early: Sequence[str], percentile: float,
                       overlatency: int | None) -> tuple[dict[float, int], dict[float, str]]:
    """Queries LoadGen's early stopping needs per reported percentile (%), and the source.

    SingleStream reports the target percentile (90th by default) and the 99th
    (``PerformanceSummary::EarlyStopping``, ``loadgen/results.cc``): the summary prints
    the count for the target (``Processed at least N queries`` / ``Need to process at
    least N queries``) and, when short, for the 99th (``would need to process at least N
    total queries``); otherwise the count is computed as LoadGen does, the least ``h + 1``
    queries with ``h = find_min_passing(1, p)``. Server reports its target percentile
    (99th by default): ``Processed N`` plus ``Would need to run at least M more`` when the
    run fell short, else computed from the run's over-latency count ``t``
    (``result_overlatency_query_count``) as ``find_min_passing(t, p) + t``. Offline has no
    early stopping: empty. See :func:`early_stopping_min_queries` for the rule.
    """
    text = " ".join(early)
    needed: dict[float, int] = {}
    sources: dict[float, str] = {}

    def put(pct: float, count: int, source: str) -> None:
        needed[round(pct * 100, 6)] = count
        sources[round(pct * 100, 6)] = source

    if scenario == "SingleStream":
        match = _SS_PROCESSED.search(text) or _SS_NEED.search(text)
        if match:
            put(percentile, int(match.group(1)), "summary")
        else:
            put(percentile, early_stopping_min_queries(1, percentile), "computed")
        second = _SS_SECOND_NEED.search(text)
        if second:
            put(float(second.group(1)) / 100, int(second.group(2)), "summary")
        else:
            put(SINGLE_STREAM_SECOND_PERCENTILE,
                early_stopping_min_queries(1, SINGLE_STREAM_SECOND_PERCENTILE), "computed")
    elif scenario == "Server":
        processed, more = _SERVER_PROCESSED.search(text), _SERVER_MORE.search(text)
        if processed and more:
            put(percentile, int(processed.group(1)) + int(more.group(1)), "summary")
        elif overlatency is not None:
            put(percentile, early_stopping_min_queries(overlatency, percentile), "computed")
    return needed, sources


def early_stopping_min_queries(overlatency: int, percentile: float,
                               confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """Total queries LoadGen's early stopping needs when ``overlatency`` of them exceed the
    latency bound: ``h + overlatency`` for the least ``h`` with
    ``P(X <= overlatency) < 1 - confidence``, ``X ~ Binomial(h + overlatency, 1 - percentile)``.

    That is the one-sided binomial test of ``loadgen/early_stopping.cc``
    (``find_min_passing``; tolerance 0, confidence 0.99 in ``results.cc``): were the true
    ``percentile``-quantile exactly at the bound, seeing that few over-bound queries would
    be rarer than ``1 - confidence``. E.g. 64 queries for the 90th percentile and 662 for
    the 99th with one over-bound query; 459 for the 99th with none.
    ``percentile`` is a fraction in (0, 1). Raises ValueError otherwise.
    """
    if not 0 < percentile < 1 or not 0 < confidence < 1 or overlatency < 0:
        raise ValueError(f"percentile={percentile!r}, confidence={confidence!r} must lie in "
                         f"(0, 1) and overlatency={overlatency!r} must not be negative")
    limit = 1 - confidence

    def passes(h: int) -> bool:
        return h > 0 and _binomial_cdf_log(overlatency, h + overlatency,
                                           1 - percentile) < math.log(limit)

    high = 1
    while not passes(high):
        high *= 2
    low = high // 2
    while low + 1 < high:
        mid = (low + high) // 2
        if passes(mid):
            high = mid
        else:
            low = mid
    return high + overlatency


def _binomial_cdf_log(k: int, n: int, q: float) -> float:
    """``log P(X <= k)`` for ``X ~ Binomial(n, q)``, summed in log space."""
    log_q, log_p = math.log(q), math.log1p(-q)
    terms = [math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1)
             + x * log_q + (n - x) * log_p for x in range(k + 1)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def detail_values(text: str) -> dict[str, Any]:
    """The detail log's ``:::MLLOG {json}`` lines: key -> value (the last one wins)."""
    values: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "key" in entry:
            values[str(entry["key"])] = entry.get("value")
    return values


def run_window_s(detail: Mapping[str, Any]) -> float | None:
    """Seconds between the detail log's ``power_begin`` and ``power_end`` (LoadGen's
    performance-run window, wall-clock stamps at ms resolution); None when missing."""
    try:
        begin = datetime.strptime(str(detail["power_begin"]), _POWER_TIME_FORMAT)
        end = datetime.strptime(str(detail["power_end"]), _POWER_TIME_FORMAT)
    except (KeyError, ValueError):
        return None
    return (end - begin).total_seconds()


def trace_latencies_ns(text: str) -> list[int]:
    """Every sample's latency (ns) in issue order, from LoadGen's trace.

    Each sample has a ``{"name":"Sample", "ph":"b", ...}`` event whose ``complete_ns``
    argument is LoadGen's latency for it (completion minus scheduled time). The trace is
    read line by line: LoadGen writes one event a line, and some other lines are not
    valid JSON (quoted keys inside quotes).
    """
    found: list[tuple[int, int]] = []
    for line in text.splitlines():
        match = _TRACE_SAMPLE.match(line)
        if match:
            found.append((int(match.group(1)), int(match.group(2))))
    return [latency for _, latency in sorted(found)]


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(float(str(value)))
    except ValueError:
        return None


def _ms(ns: int | None) -> float | None:
    return None if ns is None else ns / _NS_PER_MS
