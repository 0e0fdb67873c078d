"""The shape of the results file (``--out``, e.g. ``benchmarks/results/verdicts-3n-noisy.json``).

Every record is a plain JSON object; these ``TypedDict`` s name its keys and
value types. Keys marked optional by ``total=False`` are present only in some
records (see each class). Times are seconds unless a key ends in ``_ms``;
``*_cores`` are CPU seconds per wall second (1.0 = one core fully busy).
"""

from __future__ import annotations

from typing import Literal, TypedDict

Outcome = Literal["right", "wrong", "inconclusive", "error"]


class CpuSplit(TypedDict):
    """The machine's busy CPU during one run, in cores.

    ``run_cores``: the pytest subprocess; ``noise_cores``: the benchmark's noise
    processes; ``outside_cores``: everything else. ``None`` where ``/proc/stat``
    could not be read (or the run took no time).
    """

    run_cores: float | None
    noise_cores: float | None
    outside_cores: float | None


class RunRecord(TypedDict, total=False):
    """One verdict: one (tool, budget) of one pytest run.

    Always present once the record is complete: ``tool``, ``budget``, ``wall_s``
    (the whole subprocess), ``exit_code`` (``None``: timed out), ``cpu``,
    ``right``, ``noise``, ``rep``; and in records written since the model
    workload: ``workload``, ``truth`` (the true ratio), ``expected`` (the right
    verdict: ``"pass"`` or ``"fail"``), ``outcome`` (see ``outcomes.classify``;
    ``right`` is ``outcome == "right"``). ``error`` and ``output_tail`` (last
    3000 characters of the run's output) only for runs without a usable result;
    ``passed`` and ``measured`` otherwise. ``baseline`` and ``candidate`` name
    the two variants (``slow``/``fast`` when absent).

    hwopt only: ``status``, ``low``/``high`` (the interval of the speedup),
    ``message``, ``rounds`` (an int), ``stopped``, ``elapsed_s``,
    ``contention`` (the plugin's figures), ``calls_per_sample``, ``rounds_ms``
    (per variant, the median of each round in ms), ``kept_json`` (path of the
    full ``--hwopt-json`` kept for a wrong, failed or far-off verdict),
    ``bare_wall_s`` (a bare one-test pytest run beside it, ``runs.run_bare``).
    pytest-benchmark only: ``iqr_ms``, ``rounds`` and ``iterations`` per variant.
    Both: ``median_ms`` per variant (``"slow"``, ``"fast"``).
    """

    tool: str
    budget: float
    wall_s: float
    exit_code: int | None
    cpu: CpuSplit
    error: str
    output_tail: str
    passed: bool
    status: str
    measured: float | None
    low: float | None
    high: float | None
    message: str | None
    rounds: int | dict[str, int | None] | None
    stopped: str | None
    elapsed_s: float | None
    bare_wall_s: float | None
    contention: dict[str, float | bool | None] | None
    median_ms: dict[str, float]
    iqr_ms: dict[str, float]
    calls_per_sample: dict[str, int]
    rounds_ms: dict[str, list[float]]
    iterations: dict[str, int | None]
    right: bool
    outcome: Outcome
    expected: str
    truth: float
    workload: str
    baseline: str
    candidate: str
    threads: int | None
    kept_json: str
    noise: str
    rep: int


class QuietRatio(TypedDict):
    """In-process timing of the pair at start: medians in ms and their ratios."""

    fast_ms: float
    slow_ms: float
    ratio_of_medians: float
    ratio_of_minima: float


class TruthRuns(TypedDict):
    """The true ratio of a workload measured on the quiet machine, before any noise.

    ``ratios``: the ratio one fresh pytest process measured (report-only,
    longer runs), one per process; ``truth`` their median, ``p5``/``p95`` their
    spread (linear interpolation); ``wall_s`` the whole calibration.
    """

    ratios: list[float]
    truth: float
    p5: float
    p95: float
    wall_s: float
    hwopt_args: list[str]


class Calibration(TypedDict, total=False):
    """The workload and how its truth was found.

    Synthetic pair: ``n`` loop iterations of the fast variant, ``fast_target_ms``
    and the in-process check ``quiet_ratio``; its truth is 3.0 by construction.
    Model pair: ``threads`` (every pool of both variants), ``truth_runs``.
    Both: ``workload``, ``truth``, ``margin`` (budgets ``truth * (1 -+ margin)``)
    and ``budgets``.
    """

    n: int
    workload: str
    fast_target_ms: float
    quiet_ratio: QuietRatio
    threads: int
    truth: float
    truth_runs: TruthRuns
    margin: float
    budgets: list[float]


class MachineInfo(TypedDict):
    """Where the benchmark ran; ``nproc`` is the usable cores (affinity)."""

    nproc: int | None
    cpu_count: int | None
    cpu_model: str
    platform: str
    python: str
    loadavg_at_start: list[float] | None


class PluginCode(TypedDict, total=False):
    """Which pytest-hwopt code the runs imported.

    ``mode`` is ``"snapshot of"`` (a copy taken at start, with ``copy`` and
    ``attempts``) or ``"live"``; ``sha256`` hashes the package's ``.py`` files.
    """

    mode: str
    source: str | None
    copy: str
    sha256: str | None
    attempts: int


class Settings(TypedDict):
    """Options of the run: ``timeout_s`` per pytest run, the flapping ``seed``."""

    timeout_s: float
    seed: int
    hwopt_args: list[str]
    benchmark_args: list[str]
    outside_limit_cores: float


class ResultsDoc(TypedDict, total=False):
    """The whole results file.

    ``started``/``finished`` are ISO 8601 local times, ``total_s`` the wall
    time; ``budgets`` maps ``str(budget)`` to its right verdict (``"pass"`` or
    ``"fail"``); ``interrupted`` is present (``true``) only after Ctrl-C or a
    signal.
    """

    started: str
    command: str
    machine: MachineInfo
    versions: dict[str, str]
    plugin: PluginCode
    calibration: Calibration
    true_ratio: float
    budgets: dict[str, str]
    repetitions: dict[str, int]
    noise: list[str]
    tools: list[str]
    settings: Settings
    runs: list[RunRecord]
    interrupted: bool
    finished: str
    total_s: float

