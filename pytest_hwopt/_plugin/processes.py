"""Repeating a test's measurement in fresh worker processes (``--hwopt-processes``).

An interval over rounds cannot see a bias that lasts the whole process. For a sampled
check still straddling its budget when time ran out (and, with ``--hwopt-processes=N``,
for every sampled check) the test is run again in N fresh ``python -m pytest <nodeid>``
processes, one after another (never side by side: they would disturb each other), each
with its own seed and the session's ``--hwopt-*`` settings, each writing its checks to a
JSON file of its own; the check is then judged on the estimates of all processes
(:func:`pytest_hwopt.core.combine.combined_check`). Nothing is launched when every check
is clear. A worker that crashes, times out or writes no results is named in the check's
``detail["processes"]["failures"]`` and never counts as evidence.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from pytest_hwopt._plugin.state import State, bench_key, xdist_worker
from pytest_hwopt.core import settings as core_settings

if TYPE_CHECKING:
    from pytest_hwopt.core.checks import Check
    from pytest_hwopt.core.combine import Reading
    from pytest_hwopt.core.measurement import Measurement

#: set explicitly for each worker rather than copied from the session
_OWN: Final = frozenset({"hwopt_json", "hwopt_processes", "hwopt_seed", "hwopt_device",
                         "hwopt_threads"})
#: result options a worker must not act on (it would save, compare, append to the history or
#: write reports); given to it empty, which turns them off even when they come from
#: ``addopts`` or the ini file
_BLANKED: Final = ("hwopt_save", "hwopt_compare", "hwopt_html", "hwopt_benchmark_json",
                   "hwopt_history")
#: environment a worker must not inherit: it is a plain pytest run, not an xdist worker,
#: and must not append to the CI step summary
_DROPPED_ENV: Final = ("GITHUB_STEP_SUMMARY", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                       "PYTEST_XDIST_TESTRUNUID", "PYTEST_CURRENT_TEST")
#: a worker's time limit: start-up and imports, plus three times the session's rounds and
#: preparation (export, compile) of the test
TIMEOUT_BASE_S: Final = 60.0
TIMEOUT_FACTOR: Final = 3.0


@dataclass(frozen=True)
class WorkerJob:
    """One worker process to run: its command line, where, and for how long at most."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    timeout_s: float
    json_path: Path
    seed: int


@dataclass(frozen=True)
class WorkerRun:
    """What came back from one worker: its results document, or ``error`` saying why none."""

    document: Mapping[str, Any] | None
    error: str = ""
    seconds: float | None = None


Launch = Callable[[WorkerJob], WorkerRun]


def planned(checks: Sequence[Check], processes: int | None) -> tuple[int, list[int]]:
    """``(worker processes, indices of the checks to repeat)``; ``(0, [])`` for none.

    ``processes`` None (auto): :data:`~pytest_hwopt.core.settings.AUTO_PROCESSES` workers
    for the sampled checks still inconclusive; N > 0: N workers for every sampled check;
    0: never. Only checks with a budget and an estimate are repeated, and none of a
    variant whose outputs are wrong (its speedup does not count whatever it reads).
    """
    from pytest_hwopt.core.checks import FAILED, INCONCLUSIVE, PASSED
    from pytest_hwopt.core.kinds import TOO_FEW_SAMPLES
    from pytest_hwopt.core.outcomes import BUSY
    from pytest_hwopt.core.verdicts import SAMPLED_KINDS

    if processes == 0:
        return 0, []
    wrong = {c.variant for c in checks if c.kind == "accuracy" and c.status is FAILED}
    wanted = (INCONCLUSIVE,) if processes is None else (INCONCLUSIVE, PASSED, FAILED)
    # a percentile from too few samples is biased low in every process alike: repeating it
    # would only multiply the bias (kinds.TOO_FEW_SAMPLES), so it stays inconclusive
    picked = [n for n, c in enumerate(checks)
              if c.kind in SAMPLED_KINDS and c.status in wanted and c.budget is not None
              and c.measured is not None and c.variant not in wrong
              and not c.reason.startswith(TOO_FEW_SAMPLES)
              and not c.reason.startswith(BUSY)]  # a busy machine's figure is no evidence
    if not picked:
        return 0, []
    return (core_settings.AUTO_PROCESSES if processes is None else processes), picked


def repeat(checks: Sequence[Check], picked: Sequence[int], jobs: Sequence[WorkerJob],
           nodeid: str, confidence: float, launch: Launch) -> list[Check]:
    """Run ``jobs`` one after another and judge the ``picked`` checks on every estimate.

    Each worker's reading of a check is the ``measured`` of the check with the same kind,
    variant, reference and metric among its results for ``nodeid``.
    """
    from pytest_hwopt.core.combine import combined_check

    readings: dict[int, list[Reading]] = {n: [] for n in picked}
    for job in jobs:
        run = launch(job)
        for n in picked:
            readings[n].append(reading_of(run, checks[n], nodeid, job.seed))
    out = list(checks)
    for n in picked:
        out[n] = combined_check(checks[n], readings[n], confidence)
    return out


def reading_of(run: WorkerRun, check: Check, nodeid: str, seed: int) -> Reading:
    """One worker's estimate of ``check``, or why it has none."""
    from pytest_hwopt.core.combine import Reading

    if run.document is None:
        return Reading(None, run.error or "no results", seed, run.seconds)
    found = [c for c in run.document.get("checks") or [] if c.get("test") == nodeid]
    if not found:
        return Reading(None, f"no checks for the test in its results{_why(run)}", seed,
                       run.seconds)
    for other in found:
        if (other.get("kind"), other.get("variant"), other.get("vs"), other.get("metric")) \
                == (check.kind, check.variant, check.vs, check.metric):
            value, reason = other.get("measured"), str(other.get("reason") or "")
            if reason.startswith("machine busy"):  # core.outcomes.BUSY: no evidence
                return Reading(None, reason, seed, run.seconds)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return Reading(float(value), "", seed, run.seconds)
            return Reading(None, f"no estimate ({other.get('status')}: "
                                 f"{other.get('message', '')})", seed, run.seconds)
    return Reading(None, "the check is missing from its results", seed, run.seconds)


def _why(run: WorkerRun) -> str:
    return f" ({run.error})" if run.error else ""


def launch_worker(job: WorkerJob) -> WorkerRun:
    """Run one worker process to its end (or its time limit) and read its JSON results."""
    start = time.perf_counter()
    try:
        done = subprocess.run(job.argv, cwd=job.cwd, env=job.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace",
                              timeout=job.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return WorkerRun(None, f"timed out after {job.timeout_s:g} s",
                         time.perf_counter() - start)
    except OSError as exc:
        return WorkerRun(None, f"could not start: {exc}", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    exit_note = f"exit code {done.returncode}"
    tail = _tail(done.stdout or "")
    if tail:
        exit_note += f": {tail}"
    try:
        document = json.loads(job.json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return WorkerRun(None, f"wrote no results ({exit_note})", seconds)
    except (OSError, ValueError) as exc:
        return WorkerRun(None, f"unreadable results: {exc} ({exit_note})", seconds)
    if not isinstance(document, dict):
        return WorkerRun(None, f"results are not a JSON object ({exit_note})", seconds)
    # exit code 1 is a failed budget, which the document holds; anything else is reported
    return WorkerRun(document, "" if done.returncode in (0, 1) else exit_note, seconds)


def _tail(output: str, lines: int = 3, width: int = 200) -> str:
    kept = [line.strip()[:width] for line in output.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


# ---- the glue: one test's workers ----------------------------------------------------------

def repeat_in_processes(item: pytest.Function, state: State, checks: list[Check]
                        ) -> list[Check]:
    """``checks`` with those that need it judged on fresh processes too (see the module).

    Only for tests measured by ``hwopt_bench``; ``checks`` unchanged when nothing needs it.
    """
    bench = item.stash.get(bench_key, None)
    if bench is None or bench.result is None:
        return checks
    if bench.serves or bench.loadgens:
        return checks  # load runs span processes already (a server, LoadGen's threads)
    settings = state.settings
    workers, picked = planned(checks, settings.processes)
    if not picked:
        return checks
    config = item.config
    device = state.device().torch_device
    timeout = worker_timeout(settings.max_time_s, bench.result.measurements.values())
    with tempfile.TemporaryDirectory(prefix="hwopt-processes-") as tmp, \
            _device_lock(config, device):
        jobs = [worker_job(config, item.nodeid, Path(tmp), k, settings, device, timeout)
                for k in range(1, workers + 1)]
        return repeat(checks, picked, jobs, item.nodeid, settings.confidence, launch_worker)


def worker_timeout(max_time_s: float, measurements: Iterable[Measurement]) -> float:
    """Seconds a worker may take: :data:`TIMEOUT_BASE_S` plus :data:`TIMEOUT_FACTOR` times
    the session's time limit and the test's preparation time (``prepare_s`` per variant)."""
    prepare = sum(m.prepare_s or 0.0 for m in measurements)
    return TIMEOUT_BASE_S + TIMEOUT_FACTOR * (max_time_s + prepare)


def worker_job(config: pytest.Config, nodeid: str, tmp: Path, number: int,
               settings: core_settings.Settings, device: str, timeout_s: float) -> WorkerJob:
    """Worker ``number`` (1..N) of the test ``nodeid``: seed ``--hwopt-seed`` + ``number``,
    the device this session measured on, the same thread count, its files under ``tmp``."""
    json_path = tmp / f"worker-{number}.json"
    seed = settings.seed + number
    argv = [sys.executable, "-m", "pytest", nodeid, "-q", "-p", "no:cacheprovider",
            f"--rootdir={config.rootpath}", f"--basetemp={tmp / f'basetemp-{number}'}",
            f"--hwopt-json={json_path}", "--hwopt-processes=0", f"--hwopt-seed={seed}",
            f"--hwopt-device={device}", f"--hwopt-threads={settings.threads}"]
    if config.inipath is not None:
        argv += ["-c", str(config.inipath)]
    argv += forwarded_args(config)
    if getattr(config.option, "xmlpath", None):  # --junitxml: not the session's file
        argv.append(f"--junitxml={tmp / f'junit-{number}.xml'}")
    if config.pluginmanager.hasplugin("xdist"):
        argv += ["-n", "0"]
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    return WorkerJob(argv=argv, cwd=config.rootpath, env=env, timeout_s=timeout_s,
                     json_path=json_path, seed=seed)


def forwarded_args(config: pytest.Config) -> list[str]:
    """The session's ``--hwopt-*`` values given on the command line (the ini file is read by
    the worker itself), its ``--hwopt-budgets``, its plugins (``-p``) and ini overrides
    (``-o``); result options turned off."""
    out: list[str] = []
    for opt in core_settings.OPTIONS:
        if opt.name in _OWN:
            continue
        value = config.getoption(opt.name, None)
        if value is None or value is False:
            continue
        out.append(opt.cli if value is True else f"{opt.cli}={value}")
    budgets = config.getoption("hwopt_budgets", None)
    if budgets:
        out.append(f"--hwopt-budgets={Path(config.invocation_params.dir, budgets)}")
    for name in _BLANKED:
        if config.getoption(name, None) or (name == "hwopt_history" and config.getini(name)):
            out.append("--" + name.replace("_", "-") + "=")
    args = list(config.invocation_params.args)
    for n, arg in enumerate(args):
        for short, long in (("-p", None), ("-o", "--override-ini")):
            if arg in (short, long) and n + 1 < len(args):
                out += [short, args[n + 1]]
            elif arg.startswith(short) and len(arg) > 2:
                out += [short, arg[2:]]
            elif long and arg.startswith(long + "="):
                out += [short, arg[len(long) + 1:]]
    return out


@contextlib.contextmanager
def _device_lock(config: pytest.Config, device: str) -> Iterator[None]:
    """Under pytest-xdist, hold the device while the workers measure, as a run does."""
    if xdist_worker(config) is None:
        yield
        return
    from pytest_hwopt.hardware.devlock import device_lock

    with device_lock(device):
        yield
