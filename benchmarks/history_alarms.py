"""History benchmark: does a run history cry wolf, and does it see a real slowdown?

``python -m benchmarks.history_alarms`` (from the repository root, on an idle machine):

1. **False alarms.** For each noise condition (``--noise``, default ``quiet,bursty``, the
   neighbours of ``benchmarks.verdicts.noise``), the suites (``--paths``) run ``--runs``
   times back to back with the same code, each a fresh ``python -m pytest`` process with
   ``--hwopt-history=STORE --hwopt-compare=history``; one store for all conditions. Counted:
   the ``history`` checks that failed (regressions flagged against the history), the
   variants judged, and after each condition ``pytest-hwopt history STORE --fail-on-change``
   (its exit code and the slowdowns it names). The goal: nothing flagged.
2. **Detection.** A generated test file whose ``fast`` variant can be slowed by a factor
   runs ``--runs`` times quiet into a fresh store; then a copy of that store gets one more
   run with ``fast`` 1.2x slower, another copy one 1.5x slower; ``--detection-trials``
   times, each with a fresh store. The goal: both flagged, by ``--hwopt-compare=history``
   and by ``--fail-on-change``, at that run, in every trial.

Every run's figures go to ``--out`` (JSON, rewritten after each run) and a summary is
printed. Not a test: it takes the suites' time times ``2 x --runs`` and needs a quiet
machine for its quiet rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from benchmarks.verdicts.noise import Noise, canonical

ROOT: Final = Path(__file__).resolve().parents[1]
FACTOR_VARIABLE: Final = "HISTORY_BENCH_FACTOR"

DETECTION_TEST: Final = f'''
import os

from pytest_hwopt import hwopt


def spin(n):
    total = 0
    for i in range(n):
        total += i
    return total


@hwopt.speedup(min=1.5, vs="slow")
def test_pair(hwopt_bench):
    factor = float(os.environ.get("{FACTOR_VARIABLE}", "1"))
    hwopt_bench.measure("slow", lambda: spin(60_000))
    hwopt_bench.measure("fast", lambda: spin(int(20_000 * factor)))
'''


def pytest_run(paths: Sequence[str], store: Path, extra: Sequence[str], cwd: Path,
               timeout: float, factor: float = 1.0) -> dict[str, Any]:
    """One ``python -m pytest`` process appending to ``store`` and judged against it."""
    with tempfile.TemporaryDirectory(prefix="history-bench-") as tmp:
        out = Path(tmp) / "run.json"
        env = dict(os.environ, **{FACTOR_VARIABLE: str(factor)})
        cmd = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:benchmark",
               "-p", "no:cacheprovider", f"--hwopt-history={store}",
               "--hwopt-compare=history", f"--hwopt-json={out}", *extra]
        try:
            done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
            code: int | None = done.returncode
            tail = (done.stdout + done.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            code, tail = None, "timed out"
        try:
            doc = json.loads(out.read_text())
        except (OSError, ValueError) as exc:
            return {"exit_code": code, "error": f"no usable JSON: {exc}", "output_tail": tail}
    flagged = [f"{c['test']} {c['variant']}: {c['message']}" for c in doc["checks"]
               if c["kind"] == "history" and c["status"] == "failed"]
    return {"exit_code": code, "variants": len(doc["results"]), "flagged": flagged,
            "factor": factor}


def history_command(store: Path) -> dict[str, Any]:
    """``pytest-hwopt history STORE --fail-on-change``: exit code and the slowdowns named."""
    done = subprocess.run([sys.executable, "-m", "pytest_hwopt", "history", str(store),
                           "--fail-on-change"], capture_output=True, text=True, check=False,
                          cwd=ROOT)
    lines = done.stdout.splitlines()
    return {"exit_code": done.returncode,
            "slowdowns": [line for line in lines if line.startswith("slowdown: ")],
            "summary": next((line for line in lines if " series, " in line), done.stderr)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.history_alarms",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=6, help="runs per condition (default: 6)")
    p.add_argument("--noise", default="quiet,bursty", help="conditions (default: quiet,bursty)")
    p.add_argument("--paths", default="suites", help="comma-separated test paths (suites)")
    p.add_argument("--pytest-args", default="", help="extra pytest arguments")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run (900)")
    p.add_argument("--seed", type=int, default=1, help="seed of the bursty schedule")
    p.add_argument("--keep-stores", metavar="DIR", default="",
                   help="copy every history store made into DIR (to look into a miss)")
    p.add_argument("--detection-trials", type=int, default=5,
                   help="fresh histories the detection part builds, each with its own "
                        "slowed seventh run (default: 5)")
    p.add_argument("--out", default="history-alarms-results.json", help="results JSON")
    args = p.parse_args(argv)
    if args.runs < 3:
        p.error("--runs must be at least 3 (a history needs 3 runs to judge against)")
    noises = [canonical(x.strip()) for x in args.noise.split(",") if x.strip()]
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    extra = args.pytest_args.split()
    out = Path(args.out)
    doc: dict[str, Any] = {"runs_per_condition": args.runs, "paths": paths, "alarms": [],
                           "history": {}, "detection": {}}
    work = Path(tempfile.mkdtemp(prefix="history-bench-"))
    try:
        store = work / "alarms.sqlite"
        for n, kind in enumerate(noises):
            noise = Noise(kind, args.seed + n)
            noise.start()
            try:
                for i in range(args.runs):
                    rec = dict(pytest_run(paths, store, extra, ROOT, args.timeout),
                               noise=kind, run=i)
                    doc["alarms"].append(rec)
                    _write(out, doc)
                    print(f"[{kind} {i + 1}/{args.runs}] exit={rec['exit_code']} "
                          f"flagged={len(rec.get('flagged', []))}", flush=True)
            finally:
                noise.stop()
            doc["history"][kind] = history_command(store)
            _write(out, doc)
        test_dir = work / "detection"
        test_dir.mkdir()
        (test_dir / "test_detection.py").write_text(DETECTION_TEST)
        for trial in range(args.detection_trials):
            base = work / f"detection-{trial}.sqlite"
            for _ in range(args.runs):
                pytest_run(["test_detection.py"], base, extra, test_dir, args.timeout)
            for factor in (1.2, 1.5):
                copy = work / f"detection-{trial}-{factor}.sqlite"
                shutil.copyfile(base, copy)
                rec = pytest_run(["test_detection.py"], copy, extra, test_dir, args.timeout,
                                 factor)
                doc["detection"].setdefault(str(factor), []).append(
                    dict(rec, trial=trial, history=history_command(copy)))
                _write(out, doc)
    finally:
        if args.keep_stores:
            keep = Path(args.keep_stores)
            keep.mkdir(parents=True, exist_ok=True)
            for store_file in work.glob("*.sqlite"):
                shutil.copy2(store_file, keep / store_file.name)
        shutil.rmtree(work, ignore_errors=True)
    for kind in noises:
        rows = [r for r in doc["alarms"] if r["noise"] == kind]
        flagged = sum(len(r.get("flagged", [])) for r in rows)
        variants = max((r.get("variants", 0) for r in rows), default=0)
        hist = doc["history"].get(kind, {})
        print(f"{kind}: {len(rows)} runs of {variants} variants, {flagged} flagged by "
              f"--hwopt-compare=history; history --fail-on-change exit "
              f"{hist.get('exit_code')}, {len(hist.get('slowdowns', []))} slowdown(s)")
    for factor, trials in doc["detection"].items():
        by_compare = sum(1 for r in trials if r.get("flagged"))
        by_command = sum(1 for r in trials if r["history"]["exit_code"] == 1)
        print(f"fast {factor}x slower at run {args.runs + 1}: flagged by "
              f"--hwopt-compare=history in {by_compare} of {len(trials)} trials, by history "
              f"--fail-on-change in {by_command} of {len(trials)}")
    return 0


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
