"""Options and the main loop of the verdict benchmark: ``python -m benchmarks.verdicts``.

Conditions run one after the other; inside a condition the tools alternate
repetition by repetition, and the order of the two hwopt budgets alternates.
The results file is rewritten every five repetitions and at the end of each
condition, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Final

import benchmarks.verdicts as package
from benchmarks.verdicts.cpu import OUTSIDE_LIMIT
from benchmarks.verdicts.environment import (
    check_installed,
    live_plugin,
    machine,
    snapshot_plugin,
)
from benchmarks.verdicts.noise import ALIASES, NOISES, Noise, canonical, usable_cores
from benchmarks.verdicts.outcomes import budgets_around, expected_pass, outcome_of
from benchmarks.verdicts.records import Calibration, ResultsDoc, RunRecord
from benchmarks.verdicts.runs import (
    TOOLS,
    RunSetup,
    measure_truth,
    run_bare,
    run_benchmark,
    run_hwopt,
)
from benchmarks.verdicts.summary import read_results, report, workload_line, write_results
from benchmarks.verdicts.workload import (
    ALL_WORKLOADS,
    BUDGETS,
    FAST_TARGET_MS,
    MARGIN,
    MODEL_WORKLOADS,
    TRUE_RATIO,
    calibrate,
    quiet_ratio,
)

SAVE_EVERY: Final = 5  # repetitions between rewrites of the results file
TRUTH_RUNS: Final = 21  # fresh processes that measure a model pair's true ratio


def parse_repetitions(text: str, tools: Sequence[str]) -> dict[str, int]:
    """``--repetitions``: ``"N"`` for every tool, or ``"TOOL=N,TOOL=N"`` (others get 0).

    Tools named but not chosen in ``tools`` are ignored; an unknown tool or a
    count that is not an integer raises ``SystemExit``.
    """
    text = text.strip()
    try:
        if "=" not in text:
            return {t: int(text) for t in tools}
        reps = {t: 0 for t in tools}
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in TOOLS:
                raise SystemExit(f"--repetitions: unknown tool {name!r}; "
                                 f"known: {', '.join(TOOLS)}")
            if name in reps:
                reps[name] = int(value)
        return reps
    except ValueError as exc:
        raise SystemExit(f"--repetitions: {exc}") from None


def schedule(reps: dict[str, int], tools: Sequence[str]) -> Iterator[tuple[int, str]]:
    """``(repetition, tool)`` pairs: tools take turns per repetition, each until its count."""
    for rep in range(max(reps.values(), default=0)):
        for tool in tools:
            if rep < reps[tool]:
                yield rep, tool


def build_parser() -> argparse.ArgumentParser:
    """The command line (see ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.verdicts",
                                description=(package.__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repetitions", default="hwopt=100,pytest-benchmark=30",
                   help="verdicts per (tool, noise, budget): N for every tool, or "
                        "TOOL=N,TOOL=N (default: hwopt=100,pytest-benchmark=30)")
    p.add_argument("--noise", default=",".join(NOISES),
                   help=f"comma-separated conditions (default: {','.join(NOISES)}; "
                        f"{', '.join(f'{a}={b}' for a, b in ALIASES.items())} as before)")
    p.add_argument("--tools", default=",".join(TOOLS),
                   help=f"comma-separated tools (default: {','.join(TOOLS)})")
    p.add_argument("--out", default="verdicts-results.json",
                   help="JSON with the raw per-run data (default: verdicts-results.json)")
    p.add_argument("--workload", choices=ALL_WORKLOADS, default="3n",
                   help="the pair: '3n' fast work(n) vs slow work(3n) (default), 'repeat' "
                        "slow as three calls of work(n), 'ort-mlp' ONNX Runtime vs eager "
                        "PyTorch on an MLP 64-128-16 at batch 32 (true ratio measured first)")
    p.add_argument("--margin", type=float, default=MARGIN,
                   help=f"ort-mlp: budgets this fraction either side of the true ratio "
                        f"(default: {MARGIN})")
    p.add_argument("--threads", type=int, default=None,
                   help="ort-mlp: threads of every pool of both variants (default: the usable "
                        "cores)")
    p.add_argument("--truth-runs", type=int, default=TRUTH_RUNS,
                   help=f"ort-mlp: fresh quiet processes whose median ratio is the truth "
                        f"(default: {TRUTH_RUNS})")
    p.add_argument("--truth", type=float, default=None,
                   help="ort-mlp: the true ratio, measured earlier (skips --truth-runs)")
    p.add_argument("--n", type=int, default=None,
                   help=f"loop iterations of the fast variant (default: calibrated to about "
                        f"{FAST_TARGET_MS} ms)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs pytest (default: this one)")
    p.add_argument("--plugin-dir", default=None,
                   help="the pytest_hwopt package directory to copy (e.g. in a git worktree "
                        "of one commit) instead of the one the interpreter imports")
    p.add_argument("--live-plugin", action="store_true",
                   help="import pytest_hwopt from where it is installed instead of a copy "
                        "taken at start")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds before one pytest run is killed and counted as an error "
                        "(default: 120)")
    p.add_argument("--seed", type=int, default=1, help="seed of the flapping schedule")
    p.add_argument("--hwopt-args", default="",
                   help="extra pytest arguments for the hwopt runs (default: none)")
    p.add_argument("--benchmark-args", default="",
                   help="extra pytest arguments for the pytest-benchmark runs (default: none)")
    p.add_argument("--keep-dir", default=None,
                   help="where to keep the full --hwopt-json of wrong, failed or far-off verdicts "
                        "(default: OUT without .json, plus '.wrong/')")
    p.add_argument("--table-from", default=None, metavar="JSON",
                   help="print the report of an earlier run's JSON and exit")
    return p


def progress_line(rec: RunRecord, done: int, total: int) -> str:
    """One line per verdict: ``ok``, ``BAD`` (wrong), ``INC`` (inconclusive) or ``ERR``, ratio,
    wall s, outside cores."""
    mark = {"right": "ok ", "wrong": "BAD", "inconclusive": "INC"}.get(outcome_of(rec), "ERR")
    tool = rec["tool"]
    extra = f" status={rec.get('status')}" if tool == "hwopt" else ""
    measured = rec.get("measured")
    mtext = f"{measured:.3f}" if isinstance(measured, (int, float)) else "-"
    cpu = rec.get("cpu")
    outside = cpu.get("outside_cores") if cpu else None
    return (f"[{rec['noise']} {done}/{total}] {mark} {tool} min={rec['budget']} "
            f"ratio={mtext}{extra} passed={rec.get('passed')} {rec['wall_s']:.2f}s "
            f"outside={outside if outside is None else round(outside, 2)}"
            + (f" error={rec['error']}" if "error" in rec else ""))


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM / SIGHUP unwind like Ctrl-C, so the noise processes are killed."""
    raise KeyboardInterrupt(f"signal {signum}")


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or print an earlier report); returns the exit status.

    0: done; 1: interrupted (what was measured is written) or nothing started.
    Option errors and missing packages raise ``SystemExit`` with a message.
    """
    p = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)

    if args.table_from:
        print(report(read_results(Path(args.table_from))))
        return 0

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tools:
        if t not in TOOLS:
            p.error(f"unknown tool {t!r}; known: {', '.join(TOOLS)}")
    try:
        noises = [canonical(x.strip()) for x in args.noise.split(",") if x.strip()]
    except ValueError as exc:
        p.error(str(exc))
    model = args.workload in MODEL_WORKLOADS
    if not 0 < args.margin < 1:
        p.error("--margin must lie between 0 and 1")
    if args.truth is not None and args.truth <= 0:
        p.error("--truth must be positive")
    if args.truth_runs < 1 or (args.threads is not None and args.threads < 1):
        p.error("--truth-runs and --threads must be at least 1")
    reps = parse_repetitions(args.repetitions, tools)
    found = check_installed(args.python, tools)
    out = Path(args.out)
    keep = Path(args.keep_dir) if args.keep_dir else out.with_name(
        (out.name[:-5] if out.name.endswith(".json") else out.name) + ".wrong")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)

    command = shlex.join([sys.executable, "-m", package.__name__, *argv])
    info = machine()
    print(f"machine: nproc={info['nproc']} (cpu_count={info['cpu_count']}), "
          f"CPU: {info['cpu_model']}, {info['platform']}, Python {info['python']}", flush=True)
    print(f"command: {command}", flush=True)

    snapdir = tempfile.mkdtemp(prefix="verdicts-plugin-")
    cache_dir = tempfile.mkdtemp(prefix="verdicts-cache-")  # the model pair's export cache
    noise: Noise | None = None
    doc: ResultsDoc | None = None
    t_start = time.perf_counter()
    try:
        source = args.plugin_dir or found.package
        if "hwopt" in tools and not args.live_plugin and source is not None:
            plugin = snapshot_plugin(args.python, Path(source), Path(snapdir))
            pythonpath: str | None = snapdir
        else:
            plugin = live_plugin(found.package)
            pythonpath = None
        print(f"pytest-hwopt code: {plugin['mode']} {plugin['source']} "
              f"(sha256 {str(plugin['sha256'])[:16]})", flush=True)
        setup = RunSetup(args.python, 0, args.workload, args.timeout,
                         shlex.split(args.hwopt_args), shlex.split(args.benchmark_args), keep,
                         pythonpath)
        cal: Calibration = {"workload": args.workload}
        if model:
            setup.threads = args.threads or len(usable_cores())
            setup.cache_dir = cache_dir
            cal["threads"] = setup.threads
            if args.truth is not None:
                truth = args.truth
            else:
                print(f"measuring the true ratio: {args.truth_runs} fresh processes, no noise "
                      f"added", flush=True)
                runs_ = measure_truth(setup, args.truth_runs,
                                      lambda line: print(line, flush=True))
                cal["truth_runs"] = runs_
                truth = runs_["truth"]
            budgets = budgets_around(truth, args.margin)
            cal["margin"] = args.margin
        else:
            setup.n = args.n or calibrate()
            cal.update({"n": setup.n, "fast_target_ms": FAST_TARGET_MS,
                        "quiet_ratio": quiet_ratio(setup.n, args.workload)})
            truth, budgets = TRUE_RATIO, BUDGETS
        setup.truth, setup.budgets = truth, budgets
        cal.update({"truth": truth, "budgets": list(budgets)})
        doc = {
            "started": _now(),
            "command": command, "machine": info, "versions": found.versions, "plugin": plugin,
            "calibration": cal,
            "true_ratio": truth,
            "budgets": {str(b): ("pass" if expected_pass(b, truth) else "fail") for b in budgets},
            "repetitions": reps, "noise": noises, "tools": tools,
            "settings": {"timeout_s": args.timeout, "seed": args.seed,
                         "hwopt_args": setup.hwopt_args, "benchmark_args": setup.benchmark_args,
                         "outside_limit_cores": OUTSIDE_LIMIT},
            "runs": [],
        }
        print(workload_line(doc), flush=True)
        print(f"repetitions: {reps}; noise: {noises}; tools: {tools}", flush=True)
        runs = doc["runs"]
        for ni, kind in enumerate(noises):
            noise = Noise(kind, args.seed + ni)
            noise.start()
            setup.noise, setup.noise_pids = kind, noise.pids()
            t_cond = time.perf_counter()
            done = 0
            total = sum(reps[t] * (len(budgets) if t == "hwopt" else 1) for t in tools)
            for rep, tool in schedule(reps, tools):
                setup.rep = rep
                if tool == "hwopt":
                    # alternate the budgets' order between repetitions
                    order = budgets if rep % 2 == 0 else budgets[::-1]
                    recs = [run_hwopt(setup, b) for b in order]
                    bare = run_bare(setup)
                    for r in recs:
                        r["bare_wall_s"] = bare
                    done += len(recs)
                else:
                    recs = run_benchmark(setup)
                    done += 1
                for r in recs:
                    r["noise"], r["rep"], r["workload"] = kind, rep, args.workload
                    runs.append(r)
                    print(progress_line(r, done, total), flush=True)
                if rep % SAVE_EVERY == SAVE_EVERY - 1:
                    write_results(out, doc)
            noise.stop()
            noise = None
            print(f"[{kind}] done in {time.perf_counter() - t_cond:.0f}s", flush=True)
            write_results(out, doc)
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", file=sys.stderr, flush=True)
        if doc is not None:
            doc["interrupted"] = True
    finally:
        if noise is not None:
            noise.stop()
        shutil.rmtree(snapdir, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
        if doc is not None:
            doc["finished"] = _now()
            doc["total_s"] = time.perf_counter() - t_start
            write_results(out, doc)
    if doc is None:
        return 1
    print()
    print(report(doc))
    print(f"\nraw per-run data: {out}" + (f"; full --hwopt-json of those verdicts: {keep}/"
                                         if keep.exists() else ""))
    return 1 if doc.get("interrupted") else 0
