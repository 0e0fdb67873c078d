"""One pytest subprocess per verdict, and the verdict records read from its outcome.

The launchers (:func:`run_hwopt`, :func:`run_benchmark`) write a test file into
a fresh temporary directory, run ``python -m pytest`` there in its own process
group (killed on timeout) and hand what it left, a :class:`PytestRun`, to the
pure parsers (:func:`hwopt_record`, :func:`benchmark_records`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from benchmarks.verdicts.cpu import CpuAccount
from benchmarks.verdicts.noise import kill_group
from benchmarks.verdicts.outcomes import classify, expected_pass
from benchmarks.verdicts.records import CpuSplit, RunRecord, TruthRuns
from benchmarks.verdicts.workload import (
    BENCHMARK_TEST,
    BUDGETS,
    CALIBRATION_BUDGET,
    HWOPT_TEST,
    MODEL_WORKLOADS,
    PYTEST_INI,
    TRUE_RATIO,
    outside_band,
    render_model_test,
    render_test_file,
)
from pytest_hwopt.core.stats import median, percentile

TOOLS: Final = ("hwopt", "pytest-benchmark")
OUTPUT_TAIL_CHARS: Final = 3000
JSON_NAME: Final = "out.json"
# the environment a user's shell may add that would change what pytest loads
_CLEARED_ENV: Final = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
                       "PYTHONPATH")


@dataclass
class RunSetup:
    """What every run needs; ``noise``, ``noise_pids`` and ``rep`` change as the benchmark goes on.

    ``timeout`` is seconds per pytest run; ``keep_dir`` receives the full
    ``--hwopt-json`` of wrong, failed or far-off verdicts; ``pythonpath`` is the
    directory holding the plugin copy (first on ``sys.path``), or ``None`` for
    the installed package. ``truth`` and ``budgets``: the pair's true ratio and
    the two budgets judged. Model workloads only: ``threads`` for every pool of
    both variants, ``cache_dir`` a pytest cache shared by the runs (the ONNX
    export is made once, not once per verdict).
    """

    python: str
    n: int
    workload: str
    timeout: float
    hwopt_args: list[str]
    benchmark_args: list[str]
    keep_dir: Path
    pythonpath: str | None = None
    noise: str = ""
    noise_pids: list[int] = field(default_factory=list)
    rep: int = 0
    truth: float = TRUE_RATIO
    budgets: tuple[float, float] = BUDGETS
    threads: int | None = None
    cache_dir: str | None = None

    @property
    def model(self) -> bool:
        """Whether the workload is a model pair (else the synthetic one)."""
        return self.workload in MODEL_WORKLOADS

    def hwopt_file(self, budget: float) -> str:
        """The hwopt test file judging ``budget``."""
        if self.model:
            return render_model_test("hwopt", budget=budget)
        return self.test_file(HWOPT_TEST, budget=budget)

    def benchmark_file(self) -> str:
        """The pytest-benchmark test file (``test_slow``, ``test_fast``)."""
        if self.model:
            return render_model_test("pytest-benchmark", threads=self.threads or 1)
        return self.test_file(BENCHMARK_TEST)

    def hwopt_base_args(self) -> list[str]:
        """pytest arguments of every hwopt run before the user's ``--hwopt-args``.

        The model workload keeps pytest's cache (``cache_dir``: the plugin's export
        cache) and fixes the thread count; the synthetic one runs without a cache.
        """
        cache = (["-o", f"cache_dir={self.cache_dir}"] if self.model and self.cache_dir
                 else ["-p", "no:cacheprovider"])
        threads = [f"--hwopt-threads={self.threads}"] if self.threads else []
        return [*cache, "-p", "no:benchmark", "-q", "--hwopt-device=cpu",
                f"--hwopt-json={JSON_NAME}", *threads]

    def env(self) -> dict[str, str]:
        """The environment of a pytest run: ours, less what would change its plugins."""
        env = dict(os.environ)
        for key in _CLEARED_ENV:
            env.pop(key, None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def test_file(self, template: str, **extra: object) -> str:
        """The test file's source for this setup's ``n`` and workload."""
        return render_test_file(template, self.n, self.workload, **extra)


@dataclass(frozen=True)
class PytestRun:
    """What one pytest subprocess left behind.

    ``exit_code`` is ``None`` if it timed out (and was killed); ``wall_s`` is the
    whole subprocess in seconds; ``output_tail`` the last
    :data:`OUTPUT_TAIL_CHARS` characters of its stdout and stderr; ``doc`` its
    parsed JSON output (``None`` if there was none, with ``doc_error`` saying
    why).
    """

    exit_code: int | None
    wall_s: float
    output_tail: str
    cpu: CpuSplit
    doc: Any = None  # JSON written by another program: arbitrary until parsed
    doc_error: Exception | None = None


def read_json(path: Path) -> tuple[Any, Exception | None]:
    """``(parsed JSON, None)``, or ``(None, the OSError or ValueError)``."""
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, exc


def run_pytest(setup: RunSetup, args: list[str], cwd: Path) -> PytestRun:
    """``python -m pytest args`` in ``cwd`` in its own process group; reads ``cwd/out.json``."""
    cmd = [setup.python, "-m", "pytest", *args]
    account = CpuAccount(setup.noise_pids)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=setup.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=setup.timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, code = b"", None
    except BaseException:
        kill_group(proc)
        raise
    wall = time.perf_counter() - t0
    cpu = account.finish()
    doc, error = read_json(cwd / JSON_NAME)
    return PytestRun(code, wall, out.decode(errors="replace")[-OUTPUT_TAIL_CHARS:], cpu,
                     doc, error)


def speedup_check(doc: Any) -> Any:
    """The first ``speedup`` check of a ``--hwopt-json`` document (the model path adds an
    accuracy check beside it), or ``checks[0]``; ``IndexError``/``KeyError`` if none."""
    checks = doc["checks"]
    return next((c for c in checks if c.get("kind") == "speedup"), checks[0])


def exit_code_agrees(code: int | None, status: str, passed: bool) -> bool:
    """Whether pytest's exit code fits the check: 0 for ``passed``, 1 for ``failed``.

    An ``inconclusive`` check may end either way (a warning by default, a failure
    under ``--hwopt-strict`` or with the plugin before that change), so 0 and 1
    both fit; other statuses go by ``passed``.
    """
    if code not in (0, 1):
        return False
    if status == "inconclusive":
        return True
    return (code == 0) == passed


def hwopt_record(run: PytestRun, budget: float, truth: float = TRUE_RATIO) -> RunRecord:
    """The verdict of a pytest-hwopt run on one speedup budget of a pair whose true ratio is
    ``truth``.

    Reads the speedup check (:func:`speedup_check`), ``tests[0]`` and ``results``
    of the ``--hwopt-json`` document; the outcome comes from the check's
    ``status`` (``outcomes.classify``), not from the exit code, which must merely
    agree (:func:`exit_code_agrees`). Any disagreement, a missing or malformed
    document sets ``error`` (and ``output_tail``); ``right`` is then ``False``
    and ``outcome`` ``"error"``.
    """
    code = run.exit_code
    expected = expected_pass(budget, truth)
    rec: RunRecord = {"tool": "hwopt", "budget": budget, "truth": truth,
                      "expected": "pass" if expected else "fail", "wall_s": run.wall_s,
                      "exit_code": code, "cpu": run.cpu}
    if run.doc is None:
        why = "timed out" if code is None else type(run.doc_error).__name__
        rec["error"] = f"no JSON ({why})"
    else:
        try:
            check = speedup_check(run.doc)
            test = run.doc["tests"][0]
            results = {r["variant"]: r for r in run.doc["results"]}
            rec.update({
                "passed": bool(check["passed"]), "status": check["status"],
                "baseline": check.get("vs") or "slow", "candidate": check.get("variant") or "fast",
                "threads": test.get("threads",
                                    (run.doc.get("environment") or {}).get("threads")),
                "measured": check["measured"], "low": check["low"], "high": check["high"],
                "message": check.get("message"), "rounds": test.get("rounds"),
                "stopped": test.get("stopped"), "elapsed_s": test.get("elapsed_s"),
                "contention": test.get("contention"),
                "median_ms": {k: v["median_ms"] for k, v in results.items()},
                "calls_per_sample": {k: v["calls_per_sample"] for k, v in results.items()},
                "rounds_ms": {k: v["rounds_ms"] for k, v in results.items()},
            })
            if not exit_code_agrees(code, rec["status"], rec["passed"]):
                rec["error"] = (f"exit code {code} disagrees with status={rec['status']}, "
                                f"passed={rec['passed']}")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            rec["error"] = f"unexpected JSON: {exc!r}"
    if "error" in rec:
        rec["output_tail"] = run.output_tail
        rec["outcome"] = "error"
    else:
        rec["outcome"] = classify(rec["status"], rec["passed"], expected)
    rec["right"] = rec["outcome"] == "right"
    return rec


def worth_keeping(rec: RunRecord, band: tuple[float, float] = BUDGETS) -> bool:
    """Whether a hwopt verdict's full JSON is kept: an error, a verdict that was not right
    (wrong or inconclusive), or an interval wholly outside ``band``."""
    return ("error" in rec or not rec["right"]
            or outside_band(rec.get("low"), rec.get("high"), band))


def run_hwopt(setup: RunSetup, budget: float) -> RunRecord:
    """One pytest-hwopt verdict: a pytest run of one test with one speedup budget."""
    with tempfile.TemporaryDirectory(prefix="verdicts-hwopt-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text(PYTEST_INI)
        (d / "test_pair.py").write_text(setup.hwopt_file(budget))
        pytest_args = [*setup.hwopt_base_args(), *setup.hwopt_args, "test_pair.py"]
        run = run_pytest(setup, pytest_args, d)
        rec = hwopt_record(run, budget, setup.truth)
        if run.doc is not None and worth_keeping(rec, setup.budgets):
            setup.keep_dir.mkdir(parents=True, exist_ok=True)
            kept = setup.keep_dir / f"hwopt-{setup.noise}-{budget}-rep{setup.rep}.json"
            kept.write_text(json.dumps(run.doc, indent=1))
            rec["kept_json"] = str(kept)
        return rec


#: the reference for seconds per verdict: pytest with the same interpreter, plugins and
#: options running one empty test (the host's speed drifts by 2x over minutes here)
BARE_TEST: Final = "def test_nothing():\n    pass\n"


def run_bare(setup: RunSetup) -> float | None:
    """Wall seconds of a bare pytest run beside a verdict: :data:`BARE_TEST` with the
    verdict's arguments; ``None`` if it did not pass."""
    with tempfile.TemporaryDirectory(prefix="verdicts-bare-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text(PYTEST_INI)
        (d / "test_bare.py").write_text(BARE_TEST)
        run = run_pytest(setup, [*setup.hwopt_base_args(), *setup.hwopt_args, "test_bare.py"], d)
        return run.wall_s if run.exit_code == 0 else None


def benchmark_records(run: PytestRun, budgets: tuple[float, ...] = BUDGETS,
                      truth: float = TRUE_RATIO) -> list[RunRecord]:
    """One verdict per budget from a pytest-benchmark run's ratio of medians.

    Reads ``stats`` of the ``test_slow`` and ``test_fast`` benchmarks; the
    verdict is ``median(slow) / median(fast) >= budget``. A missing or
    malformed document or a non-zero exit code sets ``error`` (and
    ``output_tail``) on every record, and ``right`` to ``False``.
    """
    code = run.exit_code
    base: RunRecord = {"tool": "pytest-benchmark", "wall_s": run.wall_s, "exit_code": code,
                       "cpu": run.cpu}

    def unusable(exc: Exception | None) -> str:
        return ("timed out" if code is None
                else f"no usable JSON: {type(exc).__name__}: {exc}")

    if run.doc is None:
        base["error"] = unusable(run.doc_error)
    else:
        try:
            stats = {b["name"]: b["stats"] for b in run.doc["benchmarks"]}
            slow, fast = stats["test_slow"], stats["test_fast"]
            base.update({
                "measured": slow["median"] / fast["median"],
                "median_ms": {"slow": slow["median"] * 1e3, "fast": fast["median"] * 1e3},
                "iqr_ms": {"slow": slow["iqr"] * 1e3, "fast": fast["iqr"] * 1e3},
                "rounds": {"slow": slow.get("rounds"), "fast": fast.get("rounds")},
                "iterations": {"slow": slow.get("iterations"), "fast": fast.get("iterations")},
            })
            if code != 0:
                base["error"] = f"pytest exit code {code}"
        except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            base["error"] = unusable(exc)
    if "error" in base:
        base["output_tail"] = run.output_tail
    out = []
    for budget in budgets:
        rec = base.copy()
        expected = expected_pass(budget, truth)
        rec.update({"budget": budget, "truth": truth, "expected": "pass" if expected else "fail"})
        if "error" not in rec:
            measured = rec["measured"]
            rec["passed"] = measured is not None and measured >= budget
            rec["outcome"] = classify(None, rec["passed"], expected)
        else:
            rec["outcome"] = "error"
        rec["right"] = rec["outcome"] == "right"
        out.append(rec)
    return out


def run_benchmark(setup: RunSetup) -> list[RunRecord]:
    """One pytest-benchmark run; a verdict record for each budget from its median ratio."""
    with tempfile.TemporaryDirectory(prefix="verdicts-pb-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text(PYTEST_INI)
        (d / "test_pair.py").write_text(setup.benchmark_file())
        pytest_args = ["-p", "no:cacheprovider", "-p", "no:hwopt", "-q",
                       f"--benchmark-json={JSON_NAME}", *setup.benchmark_args, "test_pair.py"]
        return benchmark_records(run_pytest(setup, pytest_args, d), setup.budgets, setup.truth)


CALIBRATION_ARGS: Final = ("--hwopt-report-only", "--hwopt-min-rounds=40")


def truth_summary(ratios: list[float], wall_s: float, hwopt_args: list[str]) -> TruthRuns:
    """The median and 5th/95th percentiles of the calibration runs' ratios.

    Raises ``ValueError`` when no run measured a ratio.
    """
    if not ratios:
        raise ValueError("no calibration run measured a ratio")
    return {"ratios": ratios, "truth": median(ratios), "p5": percentile(ratios, 5),
            "p95": percentile(ratios, 95), "wall_s": wall_s, "hwopt_args": hwopt_args}


def measure_truth(setup: RunSetup, runs: int, log: Callable[[str], None] = print) -> TruthRuns:
    """The model pair's true ratio: the median over ``runs`` fresh pytest processes.

    Each runs the hwopt model test in report-only mode with at least 40 rounds
    (:data:`CALIBRATION_ARGS`) and the setup's threads and cache, on the machine
    as it is (the benchmark calls this before starting any noise). Raises
    ``SystemExit`` when no run measured a ratio (with the last run's output).
    """
    ratios: list[float] = []
    last = ""
    t0 = time.perf_counter()
    args = [*setup.hwopt_base_args(), *CALIBRATION_ARGS]
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="verdicts-truth-") as tmp:
            d = Path(tmp)
            (d / "pytest.ini").write_text(PYTEST_INI)
            (d / "test_pair.py").write_text(setup.hwopt_file(CALIBRATION_BUDGET))
            run = run_pytest(setup, [*args, "test_pair.py"], d)
        measured = None
        try:
            measured = float(speedup_check(run.doc)["measured"])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            last = run.output_tail
        if measured is not None and measured > 0:
            ratios.append(measured)
        log(f"[truth {i + 1}/{runs}] ratio={measured} {run.wall_s:.2f}s")
    try:
        return truth_summary(ratios, time.perf_counter() - t0, args)
    except ValueError:
        raise SystemExit(f"benchmarks.verdicts: no calibration run measured a ratio; "
                         f"the last said:\n{last}") from None
