"""The results document (``--hwopt-json``) as typed records, its builder and its JSON Schema.

Pure: no pytest, no torch. The document is::

    {"version": "0.1.0", "format": 1, "environment": {...},
     "tests":   [{"test", "device", "rounds", ...}],            # one per measured test
     "results": [{"test", "variant", "median_ms", ..., "samples", "rounds_ms"}],
     "checks":  [{"test", "kind", "variant", "vs", "budget", "measured", "low", "high",
                  "unit", "status", "message", "metric", "budget_key", "detail", "passed"}],
     "baseline": {...}}                                          # only with --hwopt-compare

Each :class:`~typing.TypedDict` below has a definition of the same name in the JSON Schema
file shipped beside this module (:func:`json_schema`), so other tools can validate our files;
a test keeps the two in step. Times are in ms (``*_ms``) or s (``*_s``), memory in MB.

Objects that carry facts from outside this package (a result's backend facts, the
environment's device facts, a check's ``detail``, a test's ``notes``, the device peaks, the
document itself, which hooks may add to) accept keys beyond the ones typed here; the others
are closed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict, cast

if TYPE_CHECKING:
    from pytest_hwopt.core.settings import Settings

FORMAT: Final = 1  # the document's "format"; raised when a key changes meaning or goes away
SCHEMA_FILE: Final = "hwopt-results.schema.json"

Status = Literal["passed", "failed", "inconclusive", "skipped", "reported"]
Verdict = Literal["regression", "improvement", "unchanged", "new", "missing"]


# ---- one test ----------------------------------------------------------------------------

class Contention(TypedDict):
    """CPU time other processes used during the rounds, and the run's own cores
    (``core.contention``)."""

    other_busy_cores: float | None
    steal_fraction: float | None
    load1: float | None
    own_cores: float | None
    contended: bool


class Telemetry(TypedDict, total=False):
    """What NVML saw during the rounds; ``{}`` without NVML (``hardware.nvml``)."""

    nvml: bool
    reason: str  # why there is no NVML
    seconds: float
    samples: int
    sample_errors: int
    reasons_supported: bool
    reasons: list[str]  # clock-event reasons seen
    throttled: bool
    energy_mj: float | None
    mean_power_w: float | None
    max_temperature_c: float | None
    min_sm_clock_mhz: float | None
    max_sm_clock_mhz: float | None


class _RecordMetaKeys(TypedDict):
    test: str  # the pytest node id
    device: str  # "cpu", "cuda:0"


class RecordMeta(_RecordMetaKeys, total=False):
    """One entry of ``tests``: how a test's run went.

    ``name`` .. ``params`` are pytest's names of the test, read from its item (never
    parsed from the node id); every place that shows or matches a test uses them. A test
    measured by ``hwopt_bench`` has ``rounds`` .. ``notes``; one measured by
    pytest-benchmark's fixture has ``source: "pytest-benchmark"`` instead.
    """

    name: str  # pytest's name of the test (item.name): "test_op[ns::op]"
    originalname: str  # without the parameters (item.originalname): "test_op"
    param: str  # a parametrized test's callspec id: "ns::op"
    params: dict[str, Any]  # a parametrized test's arguments (JSON values, else their repr)
    rounds: int  # interleaved rounds
    #: why the rounds ended: "decided", "min rounds", "time limit", ...; "single call" with
    #: --hwopt-disable (each variant called once)
    stopped: str
    elapsed_s: float
    contention: Contention
    telemetry: Telemetry
    notes: dict[str, Any]  # hwopt_bench.note(name, value): whatever the test noted
    source: str


class MemoryDetails(TypedDict, total=False):
    """CUDA memory figures of the last memory measurement."""

    allocated_peak_mb: float
    reserved_peak_mb: float
    nvml_process_mb: float | None


class _VariantResultKeys(TypedDict):
    variant: str
    # None only for a serve variant none of whose requests completed
    median_ms: float | None
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    min_ms: float | None
    iqr_ms: float | None
    throughput_per_s: float | None  # items per second at the median
    items: int  # items per call
    calls: int  # timed calls
    calls_per_sample: int
    rounds: int
    warmup_calls: int
    first_call_ms: float | None
    prepare_s: float | None
    peak_memory_mb: float | None
    memory_kind: str
    minor_faults_per_call: float | None
    timer: str
    percentile_method: str
    samples: list[float]  # per-call times, ms
    rounds_ms: list[float]  # per-round block medians, ms
    disturbed: list[bool]  # per sample: the process was kept from a CPU during it
    disturbed_fraction: float  # of samples; statistics use the undisturbed ones
    rounds_disturbed: list[bool]  # per round: its block had no undisturbed sample


class VariantResult(_VariantResultKeys, total=False):
    """One measured variant (``Measurement.to_dict``); the optional keys come from
    ``Measurement.extra``. A model-path variant also carries its backend's facts
    (``Backend.describe()``), which are not typed here."""

    source: str  # "pytest-benchmark"
    bytes: float  # declared work per call
    flops: float
    cuda_graph: bool
    setup: bool  # measure(..., setup=): a setup ran before every call, untimed
    awaited: bool  # the variant returned an awaitable, awaited inside each timed call
    #: the first call took far longer than the steady state and the variant has no setup
    first_call_note: str
    memory_details: MemoryDetails
    achieved_gbs: float | None
    achieved_tflops: float | None
    achieved_intensity: float | None  # FLOP/byte
    roofline_fraction: float
    peak_gbs: float
    peak_tflops: float | None
    energy_mj_per_call: float | None
    backend: str
    precision: str
    preparation_warnings: list[str]
    reference: str  # the variant of the eager run of this candidate's module and inputs
    from_cache: bool  # the backend's artefacts (ONNX file, engine) came from the cache
    threads: int  # of every thread pool during the run (hardware.threads)
    threads_source: str  # how it was chosen: "option", "idle cores (1 of 2 idle at start)"
    thread_pools: dict[str, int]  # pool -> threads in force during the run
    # generation variants (hwopt_bench.generate): TTFT, TPOT, ITL and their facts
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttft_p99_ms: float | None
    tpot_p50_ms: float | None
    tpot_p95_ms: float | None
    tpot_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    itl_p99_ms: float | None
    generation: bool  # a generation variant (hwopt_bench.generate)
    output_tokens: int  # new tokens per sequence per call
    batch_size: int
    prompt_digest: str  # fingerprint of the prompt's token ids
    tokens_per_s: float  # new tokens per second over the batch
    ttft_samples_ms: list[float]  # aligned with samples
    tpot_samples_ms: list[float]
    ttft_rounds_ms: list[float]  # aligned with rounds_ms
    tpot_rounds_ms: list[float]
    itl_samples_ms: list[list[float]]
    metric_definitions: str
    max_new_tokens: int
    prompt_tokens: int
    token_timer: str  # host clock via a streamer, or CUDA events
    generate_kwargs: dict[str, str]  # repr of each generate() setting the test passed
    attention_backends: list[str]  # flash, memory-efficient, cudnn, math, or eager
    attention_ops: list[str]  # the profiler's names that identify attention
    # serve variants (hwopt_bench.serve): the ttft/tpot/itl keys above, over requests, and
    e2e_p50_ms: float | None  # end-to-end, from each request's scheduled send time
    e2e_p95_ms: float | None
    e2e_p99_ms: float | None
    serve: bool
    request_throughput: float  # completed requests per second
    output_throughput: float  # output tokens per second
    completed: int
    failed: int
    first_error: str | None
    duration_s: float  # the load runs' durations, summed
    send_lag_p99_ms: float | None  # the client's own lag behind its schedule
    client_behind: bool
    goodput: float  # requests per second meeting the goodput budget's SLOs
    goodput_slo: str
    throughput_rounds_ms: list[float]  # per load run: ms per output token
    load: dict[str, Any]  # how the load was sent
    load_rounds: list[dict[str, Any]]  # each load run's figures
    # LoadGen variants (hwopt_bench.loadgen): LoadGen's own figures
    loadgen: bool
    scenario: str
    loadgen_result: str  # VALID or INVALID
    invalid_reason: str
    error: str | None  # the system under test's exception, naming its sample
    qps: float | None


class ResultRow(VariantResult):
    """One entry of ``results``: a variant's result with its test's id."""

    test: str


class CheckDetail(TypedDict, total=False):
    """Facts behind a verdict: the point estimate's verdict, an output comparison, or a
    baseline comparison. A check appended by another plugin may carry keys of its own."""

    point_passed: bool
    max_abs_error: float
    max_rel_error: float
    rel_l2_error: float
    where: str
    mismatched: int
    elements: int
    atol: float
    rtol: float
    baseline: str  # the baseline file
    baseline_ms: float | None
    current_ms: float | None
    p: float | None  # Mann-Whitney
    verdict: Verdict
    #: a percentile or throughput check: the samples its bounds were read from, the fewest
    #: whose order statistics give the upper bound (the one that passes a budget) at the
    #: run's confidence, and how the bounds were made
    samples: int
    samples_needed: int
    interval: str
    #: the check repeated in fresh worker processes (``--hwopt-processes``): workers,
    #: count (estimates combined, the in-run one first), values, seeds, seconds, failures,
    #: method, confidence, in_run (the in-run verdict it replaced)
    processes: dict[str, Any]


class CheckRecord(TypedDict):
    """One verdict (``Check.to_dict``); in ``checks``, ``test`` is its test's id."""

    kind: str  # "speedup", "latency", ..., "regression", or a plugin's own
    variant: str
    vs: str | None
    budget: float | None
    measured: float | None
    low: float | None  # confidence interval of ``measured``
    high: float | None
    unit: str
    status: Status
    message: str
    reason: str  # why an inconclusive check is inconclusive; "" otherwise
    metric: str
    test: str
    budget_key: str
    detail: CheckDetail
    passed: bool


class Record(RecordMeta):
    """What the plugin keeps per test: :class:`RecordMeta` with its results and checks
    (the document splits these into ``tests``, ``results`` and ``checks``)."""

    results: list[VariantResult]
    checks: list[CheckRecord]


# ---- the session -------------------------------------------------------------------------

class PublishedPeak(TypedDict):
    """A datasheet's peaks (``hardware.peaks.PUBLISHED``)."""

    name: str
    gbs: float
    tflops: dict[str, float]  # per dtype
    source: str


class Peak(TypedDict, total=False):
    """Measured peaks of the device (``hardware.peaks.measure_peaks``)."""

    device: str
    kind: str
    torch: str
    sizes: dict[str, int]
    timer: str
    threads: int | None
    gbs: float  # copy bandwidth, read + write
    tflops: dict[str, float | None]  # GEMM, per dtype
    seconds: float
    measured_at: str
    cached: bool
    published: PublishedPeak


class SettingsRecord(TypedDict):
    """The parsed ``--hwopt-*`` settings (``core.settings.Settings``)."""

    device: str
    backends: list[str]
    json_path: str | None
    report_only: bool
    strict: bool  # inconclusive checks fail their tests (--hwopt-strict)
    disable: bool  # --hwopt-disable: each variant called once, timing budgets skipped
    max_time_s: float
    min_rounds: int
    warmup_ms: float
    block_ms: float
    confidence: float
    threads: int
    seed: int
    ort_opt_level: str
    cache: str
    compile_mode: str | None
    processes: int | None  # --hwopt-processes; None: auto


class _EnvironmentKeys(TypedDict):
    python: str
    platform: str
    hostname: str
    versions: dict[str, str]  # installed versions of the libraries that shape results
    threads: int
    thread_env: dict[str, str]
    cpu: str
    machine: str
    logical_cores: int | None
    settings: SettingsRecord


class Environment(_EnvironmentKeys, total=False):
    """The machine, device and libraries (``hardware.environment.collect``) and the settings.

    ``device`` .. ``peak`` are there when the session resolved a device (not in the
    controller of a pytest-xdist run); ``baseline_mismatch`` with ``--hwopt-compare``."""

    usable_cores: int
    cpu_flags: list[str]
    memory_gb: float
    device: str
    device_name: str
    gpu: str
    compute_capability: str
    gpu_memory_gb: float
    multiprocessors: int
    cuda: str | None
    cudnn: int | None
    peak: Peak
    baseline_mismatch: list[str]


class BaselineRow(TypedDict):
    """One variant compared with the baseline (``results.baseline.Row``)."""

    test: str
    variant: str
    baseline_ms: float | None
    current_ms: float | None
    ratio: float | None  # current / baseline median
    p: float | None
    verdict: Verdict


class BaselineSection(TypedDict):
    """The comparison with ``--hwopt-compare``'s baseline."""

    path: str
    max_regression: float  # 0.1 for 10%
    alpha: float
    counts: dict[str, int]  # verdict -> variants
    rows: list[BaselineRow]


class _ResultsDocumentKeys(TypedDict):
    version: str  # of pytest-hwopt
    format: int  # FORMAT
    environment: Environment
    tests: list[RecordMeta]
    results: list[ResultRow]
    checks: list[CheckRecord]


class Revision(TypedDict):
    """What was measured, and when (``--hwopt-json``; the history store records it)."""

    time: str  # when the run ended, ISO 8601 UTC
    commit: str | None  # from the CI's variables, else git; None where unknown
    branch: str | None


class HistoryChange(TypedDict):
    """A change point of a series (``results.changepoints``)."""

    index: int  # the first value after the step
    run: int  # the store's id of that run
    before: float  # geometric mean of the segment before (ms)
    after: float  # of the segment after (ms)
    step: float  # after / before - 1: +0.25 is 25% slower
    p: float  # two-sided t-test of the two segments' log values


class HistorySeries(TypedDict):
    """One variant's medians over the runs of one machine fingerprint."""

    test: str
    variant: str
    unit: str  # "ms"
    runs: list[int]  # the store's run ids, oldest first
    times: list[str]  # when each run was recorded (ISO 8601 UTC)
    commits: list[str | None]
    values: list[float]  # the variant's median per run
    changes: list[HistoryChange]


class _HistorySectionKeys(TypedDict):
    store: str  # the store's path
    machine: str  # the machine fingerprint the series belong to
    series: list[HistorySeries]


class HistorySection(_HistorySectionKeys, total=False):
    """``--hwopt-history``: this run's tests' series in the store, with change points."""

    changes_note: str  # why no change points were sought (ruptures missing)


class ResultsDocument(_ResultsDocumentKeys, total=False):
    """The whole ``--hwopt-json`` document."""

    baseline: BaselineSection
    revision: Revision
    history: HistorySection


# ---- building and reading ----------------------------------------------------------------

_NESTED: Final = ("results", "checks")


def document(records: Sequence[Record], environment: Environment, version: str
             ) -> ResultsDocument:
    """The ``--hwopt-json`` document: flat ``results`` and ``checks`` lists keyed by test.

    ``records`` are left as they are; a check's own ``test`` is replaced by its record's.
    """
    results: list[ResultRow] = []
    checks: list[CheckRecord] = []
    tests: list[RecordMeta] = []
    for rec in records:
        # every key but the nested lists: a record may carry keys this module does not type
        tests.append(cast(RecordMeta, {k: v for k, v in rec.items() if k not in _NESTED}))
        for var in rec.get("results", []):
            results.append({"test": rec["test"], **var})
        for check in rec.get("checks", []):
            checks.append({**check, "test": rec["test"]})
    return {"version": version, "format": FORMAT, "environment": environment.copy(),
            "tests": tests, "results": results, "checks": checks}


def records_of(document: Mapping[str, Any]) -> list[Record]:
    """Per-test records again (meta + ``results`` + ``checks``), in the order tests first
    appear; tolerant of partial documents (a row without ``test`` goes under ``""``)."""
    order: list[str] = []
    recs: dict[str, dict[str, Any]] = {}

    def rec(test: str) -> dict[str, Any]:
        if test not in recs:
            order.append(test)
            recs[test] = {"test": test, "results": [], "checks": []}
        return recs[test]

    for meta in document.get("tests") or []:
        rec(str(meta.get("test", ""))).update(
            {k: v for k, v in meta.items() if k not in _NESTED})
    for var in document.get("results") or []:
        rec(str(var.get("test", "")))["results"].append(var)
    for check in document.get("checks") or []:
        rec(str(check.get("test", "")))["checks"].append(check)
    return [cast(Record, recs[t]) for t in order]


def settings_record(settings: Settings) -> SettingsRecord:
    """``environment.settings``: every field of ``settings``, the backends as a list."""
    out = {f.name: getattr(settings, f.name) for f in fields(settings)}
    out["backends"] = list(settings.backends)
    return cast(SettingsRecord, out)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :class:`ResultsDocument`, as shipped in the package.

    A fresh dict on each call. Validate a document with any JSON Schema library, e.g.
    ``jsonschema.Draft202012Validator(json_schema()).validate(document)``.
    """
    text = resources.files("pytest_hwopt.results").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
