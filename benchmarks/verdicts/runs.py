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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from benchmarks.verdicts.cpu import CpuAccount
from benchmarks.verdicts.noise import kill_group
from benchmarks.verdicts.records import CpuSplit, RunRecord
from benchmarks.verdicts.workload import (
    BENCHMARK_TEST,
    BUDGETS,
    HWOPT_TEST,
    PYTEST_INI,
    RIGHT,
    outside_band,
    render_test_file,
)

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
    the installed package.
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


def hwopt_record(run: PytestRun, budget: float) -> RunRecord:
    """The verdict of a pytest-hwopt run on one speedup budget.

    Reads ``checks[0]``, ``tests[0]`` and ``results`` of the ``--hwopt-json``
    document; the exit code must agree with ``checks[0]["passed"]`` (0: passed,
    1: failed). Any disagreement, a missing or malformed document sets
    ``error`` (and ``output_tail``); ``right`` is then ``False``.
    """
    code = run.exit_code
    rec: RunRecord = {"tool": "hwopt", "budget": budget, "wall_s": run.wall_s,
                      "exit_code": code, "cpu": run.cpu}
    if run.doc is None:
        why = "timed out" if code is None else type(run.doc_error).__name__
        rec["error"] = f"no JSON ({why})"
    else:
        try:
            check = run.doc["checks"][0]
            test = run.doc["tests"][0]
            results = {r["variant"]: r for r in run.doc["results"]}
            rec.update({
                "passed": bool(check["passed"]), "status": check["status"],
                "measured": check["measured"], "low": check["low"], "high": check["high"],
                "message": check.get("message"), "rounds": test.get("rounds"),
                "stopped": test.get("stopped"), "elapsed_s": test.get("elapsed_s"),
                "contention": test.get("contention"),
                "median_ms": {k: v["median_ms"] for k, v in results.items()},
                "calls_per_sample": {k: v["calls_per_sample"] for k, v in results.items()},
                "rounds_ms": {k: v["rounds_ms"] for k, v in results.items()},
            })
            if code not in (0, 1) or (code == 0) != rec["passed"]:
                rec["error"] = f"exit code {code} disagrees with passed={rec['passed']}"
        except (KeyError, IndexError, TypeError) as exc:
            rec["error"] = f"unexpected JSON: {exc!r}"
    if "error" in rec:
        rec["output_tail"] = run.output_tail
    rec["right"] = "error" not in rec and rec["passed"] == RIGHT[budget]
    return rec


def worth_keeping(rec: RunRecord) -> bool:
    """Whether a hwopt verdict's full JSON is kept: an error, a wrong verdict, or far off."""
    return "error" in rec or not rec["right"] or outside_band(rec.get("low"), rec.get("high"))


def run_hwopt(setup: RunSetup, budget: float) -> RunRecord:
    """One pytest-hwopt verdict: a pytest run of one test with one speedup budget."""
    with tempfile.TemporaryDirectory(prefix="verdicts-hwopt-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text(PYTEST_INI)
        (d / "test_pair.py").write_text(setup.test_file(HWOPT_TEST, budget=budget))
        pytest_args = ["-p", "no:cacheprovider", "-p", "no:benchmark", "-q",
                       "--hwopt-device=cpu", f"--hwopt-json={JSON_NAME}", *setup.hwopt_args,
                       "test_pair.py"]
        run = run_pytest(setup, pytest_args, d)
        rec = hwopt_record(run, budget)
        if run.doc is not None and worth_keeping(rec):
            setup.keep_dir.mkdir(parents=True, exist_ok=True)
            kept = setup.keep_dir / f"hwopt-{setup.noise}-{budget}-rep{setup.rep}.json"
            kept.write_text(json.dumps(run.doc, indent=1))
            rec["kept_json"] = str(kept)
        return rec


def benchmark_records(run: PytestRun) -> list[RunRecord]:
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
    for budget in BUDGETS:
        rec = base.copy()
        rec["budget"] = budget
        if "error" not in rec:
            measured = rec["measured"]
            rec["passed"] = measured is not None and measured >= budget
            rec["right"] = rec["passed"] == RIGHT[budget]
        else:
            rec["right"] = False
        out.append(rec)
    return out


def run_benchmark(setup: RunSetup) -> list[RunRecord]:
    """One pytest-benchmark run; a verdict record for each budget from its median ratio."""
    with tempfile.TemporaryDirectory(prefix="verdicts-pb-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text(PYTEST_INI)
        (d / "test_pair.py").write_text(setup.test_file(BENCHMARK_TEST))
        pytest_args = ["-p", "no:cacheprovider", "-p", "no:hwopt", "-q",
                       f"--benchmark-json={JSON_NAME}", *setup.benchmark_args, "test_pair.py"]
        return benchmark_records(run_pytest(setup, pytest_args, d))
