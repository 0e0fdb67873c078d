"""Options and the main loop of the suite-flake benchmark: ``python -m benchmarks.suite_flake``.

For each noise condition, the suites run ``--runs`` times, each a fresh
``python -m pytest PATHS --hwopt-json=...`` process from the repository root;
then the check statuses of those runs are compared (``changes``). The results
file is rewritten after every run, so an interrupted benchmark keeps what it
measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

import benchmarks.suite_flake as package
from benchmarks.suite_flake.changes import changes, count, statuses
from benchmarks.verdicts.cpu import CpuAccount
from benchmarks.verdicts.environment import check_installed, live_plugin, machine, snapshot_plugin
from benchmarks.verdicts.noise import NOISES, Noise, canonical, kill_group
from benchmarks.verdicts.records import CpuSplit
from pytest_hwopt.core.stats import median

ROOT: Final = Path(__file__).resolve().parents[2]
OUTPUT_TAIL_CHARS: Final = 3000
DEFAULT_NOISE: Final = "quiet,bursty"
_CLEARED_ENV: Final = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
                       "PYTHONPATH")


@dataclass(frozen=True)
class SuiteRun:
    """One pytest process over the suites: exit code (``None``: timed out), wall seconds,
    CPU split, ``{check_key: status}`` (empty with ``error`` set when the JSON was unusable)
    and the tail of its output."""

    exit_code: int | None
    wall_s: float
    cpu: CpuSplit
    statuses: dict[str, str]
    error: str | None
    output_tail: str


def run_suites(python: str, paths: Sequence[str], extra: Sequence[str], cache_dir: str,
               pythonpath: str | None, noise_pids: Sequence[int], timeout: float) -> SuiteRun:
    """``python -m pytest PATHS`` from the repository root in its own process group.

    ``cache_dir``: pytest's cache (the plugin's exports); ``pythonpath``: the
    plugin copy, or ``None`` for the installed package. Killed after
    ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="suite-flake-") as tmp:
        out = Path(tmp) / "run.json"
        env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        cmd = [python, "-m", "pytest", *paths, "-q", "-p", "no:benchmark",
               "-o", f"cache_dir={cache_dir}", f"--hwopt-json={out}", *extra]
        account = CpuAccount(noise_pids)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            text, _ = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            kill_group(proc)
            text, code = b"", None
        except BaseException:
            kill_group(proc)
            raise
        wall = time.perf_counter() - t0
        cpu = account.finish()
        error: str | None = None
        found: dict[str, str] = {}
        try:
            found = statuses(json.loads(out.read_text()))
        except (OSError, ValueError) as exc:
            error = "timed out" if code is None else f"no usable JSON: {exc}"
    tail = text.decode(errors="replace")[-OUTPUT_TAIL_CHARS:]
    return SuiteRun(code, wall, cpu, found, error, tail)


HEADER: Final = ("noise", "runs", "checks", "status changed", "passed <-> failed",
                 "ever inconclusive", "exit codes", "errors", "median s/run", "noise cores",
                 "outside cores")


def table(doc: dict[str, Any]) -> str:
    """The markdown table of a results document: one row per noise condition."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for kind in doc["noise"]:
        rs = [r for r in doc["runs"] if r["noise"] == kind]
        if not rs:
            continue
        ok = [r["statuses"] for r in rs if r.get("error") is None]
        c = count(ok)
        walls = [r["wall_s"] for r in rs]
        noise_c = [r["cpu"]["noise_cores"] for r in rs if r["cpu"].get("noise_cores") is not None]
        out_c = [r["cpu"]["outside_cores"] for r in rs
                 if r["cpu"].get("outside_cores") is not None]
        lines.append("| " + " | ".join([
            kind, str(len(rs)), str(c.checks), str(c.changed), str(c.flipped),
            str(c.inconclusive), ",".join(str(r["exit_code"]) for r in rs),
            str(len(rs) - len(ok)), f"{median(walls):.1f}",
            f"{median(noise_c):.2f}" if noise_c else "-",
            f"{median(out_c):.2f}" if out_c else "-"]) + " |")
    return "\n".join(lines)


def report(doc: dict[str, Any]) -> str:
    """Header lines, the table, then every check whose status changed, with its history."""
    m = doc["machine"]
    parts = [f"date: {doc['started']} (finished {doc.get('finished', 'not finished')})",
             f"machine: nproc={m['nproc']}, CPU: {m['cpu_model']}, {m['platform']}, "
             f"Python {m['python']}",
             f"pytest-hwopt code: {doc['plugin'].get('mode')} {doc['plugin'].get('source')} "
             f"sha256 {str(doc['plugin'].get('sha256'))[:16]}",
             f"command: {doc['command']}", "", table(doc)]
    for kind in doc["noise"]:
        ok = [r["statuses"] for r in doc["runs"] if r["noise"] == kind and r.get("error") is None]
        moved = changes(ok)
        if moved:
            parts += ["", f"{kind}: checks whose status changed (run by run):"]
            parts += [f"- {'FLIP ' if c.flipped else ''}{c.key}: {' / '.join(c.history)}"
                      for c in moved]
        for r in doc["runs"]:
            if r["noise"] == kind and r.get("error") is not None:
                parts.append(f"- {kind} run {r['run']}: error: {r['error']}")
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    """The command line (see ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.suite_flake",
                                description=(package.__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5,
                   help="fresh pytest processes per noise condition (default: 5)")
    p.add_argument("--noise", default=DEFAULT_NOISE,
                   help=f"comma-separated conditions among {', '.join(NOISES)} "
                        f"(default: {DEFAULT_NOISE})")
    p.add_argument("--paths", default="suites",
                   help="comma-separated test paths, relative to the repository root "
                        "(default: suites)")
    p.add_argument("--pytest-args", default="", help="extra pytest arguments (default: none)")
    p.add_argument("--fresh-cache", action="store_true",
                   help="give every run an empty pytest cache (exports redone, as in a fresh "
                        "clone); default: one cache shared by all runs")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs pytest (default: this one)")
    p.add_argument("--plugin-dir", default=None,
                   help="the pytest_hwopt package directory to copy (e.g. in a git worktree "
                        "of one commit) instead of the one the interpreter imports")
    p.add_argument("--live-plugin", action="store_true",
                   help="import pytest_hwopt from where it is installed instead of a copy")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds before one run is killed (default: 900)")
    p.add_argument("--seed", type=int, default=1, help="seed of the bursty schedule")
    p.add_argument("--out", default="suite-flake-results.json",
                   help="JSON with every run's check statuses (default: suite-flake-results.json)")
    p.add_argument("--table-from", default=None, metavar="JSON",
                   help="print the report of an earlier run's JSON and exit")
    return p


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or print an earlier report); 0 when done, 1 when interrupted.

    Option errors and a missing pytest-hwopt raise ``SystemExit`` with a message.
    """
    p = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if args.table_from:
        print(report(json.loads(Path(args.table_from).read_text())))
        return 0
    if args.runs < 1:
        p.error("--runs must be at least 1")
    try:
        noises = [canonical(x.strip()) for x in args.noise.split(",") if x.strip()]
    except ValueError as exc:
        p.error(str(exc))
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    for path in paths:
        if not (ROOT / path.split("::")[0]).exists():
            p.error(f"no such test path under {ROOT}: {path}")
    found = check_installed(args.python, ["hwopt"])
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)

    out = Path(args.out)
    command = shlex.join([sys.executable, "-m", package.__name__, *argv])
    print(f"command: {command}", flush=True)
    snapdir = tempfile.mkdtemp(prefix="suite-flake-plugin-")
    shared_cache = tempfile.mkdtemp(prefix="suite-flake-cache-")
    noise: Noise | None = None
    doc: dict[str, Any] | None = None
    try:
        source = args.plugin_dir or found.package
        if not args.live_plugin and source is not None:
            plugin = snapshot_plugin(args.python, Path(source), Path(snapdir))
            pythonpath: str | None = snapdir
        else:
            plugin, pythonpath = live_plugin(found.package), None
        doc = {"started": _now(), "command": command, "machine": machine(),
               "versions": found.versions, "plugin": plugin, "paths": paths,
               "pytest_args": shlex.split(args.pytest_args), "fresh_cache": args.fresh_cache,
               "noise": noises, "runs_per_noise": args.runs, "runs": []}
        for ni, kind in enumerate(noises):
            noise = Noise(kind, args.seed + ni)
            noise.start()
            for i in range(args.runs):
                cache = tempfile.mkdtemp(prefix="suite-flake-cache-") if args.fresh_cache \
                    else shared_cache
                try:
                    r = run_suites(args.python, paths, doc["pytest_args"], cache, pythonpath,
                                   noise.pids(), args.timeout)
                finally:
                    if cache != shared_cache:
                        shutil.rmtree(cache, ignore_errors=True)
                rec: dict[str, Any] = {"noise": kind, "run": i, "exit_code": r.exit_code,
                                       "wall_s": r.wall_s, "cpu": r.cpu, "statuses": r.statuses,
                                       "error": r.error}
                if r.error is not None or r.exit_code not in (0, 1):
                    rec["output_tail"] = r.output_tail
                doc["runs"].append(rec)
                _write(out, doc)
                tally = {s: list(r.statuses.values()).count(s) for s in set(r.statuses.values())}
                print(f"[{kind} {i + 1}/{args.runs}] exit={r.exit_code} {r.wall_s:.1f}s "
                      f"checks={tally}" + (f" error={r.error}" if r.error else ""), flush=True)
            noise.stop()
            noise = None
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", file=sys.stderr, flush=True)
        if doc is not None:
            doc["interrupted"] = True
    finally:
        if noise is not None:
            noise.stop()
        shutil.rmtree(snapdir, ignore_errors=True)
        shutil.rmtree(shared_cache, ignore_errors=True)
        if doc is not None:
            doc["finished"] = _now()
            _write(out, doc)
    if doc is None:
        return 1
    print()
    print(report(doc))
    print(f"\nraw per-run data: {out}")
    return 1 if doc.get("interrupted") else 0
