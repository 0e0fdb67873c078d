#!/usr/bin/env python
"""How often does a speedup claim get the right verdict, and how long does a verdict take?

A workload pair with a known cost ratio (the same pure-Python loop run n and 3n
times: true speedup 3.0) is judged against two budgets 15% either side of the
truth:

* ``min=2.55``: the claim holds, the right verdict is *pass*;
* ``min=3.45``: the claim does not hold, the right verdict is *fail*.

Each verdict is one whole ``pytest`` subprocess run in a fresh temporary
directory, under conditions the script creates itself:

* ``quiet``: nothing added;
* ``busy``: one process spinning a pure-Python loop, pinned to core 0;
* ``flapping``: neighbours that switch on and off at random (busy 5-200 ms,
  idle 5-200 ms, one or two of them spinning in each busy phase).

Tools compared:

* ``hwopt``: a test with ``@hwopt.speedup(min=..., vs="slow")``; the verdict is
  ``checks[0]["passed"]`` of ``--hwopt-json`` (cross-checked with the exit code).
* ``pytest-benchmark``: what a pytest-benchmark user does today: two
  ``benchmark`` tests (one per variant) with the plugin's defaults,
  ``--benchmark-json``, and the ratio of the two ``stats.median`` compared with
  the budget. The ratio does not depend on the budget, so one run gives the
  verdict on both budgets (it is what a user would run to check either claim).

The pytest-hwopt package is copied once at start and every run imports that
copy (``--live-plugin`` turns this off), so edits to the working tree during a
long run do not mix versions; its SHA-256 is in the JSON. For each run the
script also records the CPU used by its own noise processes and by everything
else on the machine ("outside" load), so a condition spoilt by other work shows.

Usage (from the repository root)::

    .venv/bin/python benchmarks/verdicts.py --repetitions 3                      # smoke run
    .venv/bin/python benchmarks/verdicts.py --repetitions hwopt=100,pytest-benchmark=30 \\
        --noise quiet,busy,flapping --tools hwopt,pytest-benchmark --out results.json
    .venv/bin/python benchmarks/verdicts.py --table-from results.json            # table again

Standard library only; the pytest runs use the interpreter given by ``--python``
(default: the one running this script), which must have pytest-hwopt and, for
the ``pytest-benchmark`` tool, pytest-benchmark installed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

TRUE_RATIO = 3.0
BUDGETS = (2.55, 3.45)  # 15% below and above the true ratio
RIGHT = {2.55: True, 3.45: False}  # the right verdict: does the claim hold?
TOOLS = ("hwopt", "pytest-benchmark")
NOISES = ("quiet", "busy", "flapping")
FAST_TARGET_MS = 0.3  # the fast variant should take about 0.2-0.5 ms
OUTSIDE_LIMIT = 0.25  # cores of outside load above which a run is counted as disturbed

NOISE_WORKER_FLAG = "--_noise-worker"

WORK_SRC = '''\
def work(n):
    s = 0
    for i in range(n):
        s ^= i
    return s
'''

# the slow variant: one call over 3n iterations (as specified), or three calls over n
WORKLOADS = {"3n": "work(3 * N)", "repeat": "(work(N), work(N), work(N))"}

HWOPT_TEST = '''\
from pytest_hwopt import hwopt

N = {n}

{work}

@hwopt.speedup(min={budget!r}, vs="slow")
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", lambda: {slow})
    hwopt_bench.measure("fast", lambda: work(N))
'''

BENCHMARK_TEST = '''\
N = {n}

{work}

def test_slow(benchmark):
    benchmark(lambda: {slow})

def test_fast(benchmark):
    benchmark(lambda: work(N))
'''

PYTEST_INI = "[pytest]\n"  # pins the rootdir: no configuration from above the temp dir
# --------------------------------------------------------------------------- noise

def _noise_worker(argv: Sequence[str]) -> None:
    """Body of a noise process: ``busy`` spins on core 0; ``flap`` follows a shared schedule."""
    mode, parent = argv[0], int(argv[1])

    def orphaned() -> bool:
        return os.getppid() != parent

    if mode == "busy":
        if hasattr(os, "sched_setaffinity"):
            allowed = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {0 if 0 in allowed else allowed[0]})
        x = 0
        while True:
            for _ in range(200_000):  # about 5-10 ms of pure-Python work
                x ^= 1
            if orphaned():
                return
    if mode == "flap":
        # every flapping worker computes the same schedule from the same seed and
        # start time (CLOCK_MONOTONIC is system-wide), so they switch together;
        # worker `index` spins in a busy phase when index < that phase's count
        index, seed, start = int(argv[2]), int(argv[3]), float(argv[4])
        rng = random.Random(seed)
        edge = start
        while True:
            idle = rng.uniform(0.005, 0.200)
            busy = rng.uniform(0.005, 0.200)
            count = rng.choice((1, 2))
            edge += idle
            now = time.monotonic()
            if edge > now:
                time.sleep(edge - now)
            edge += busy
            if index < count:
                while time.monotonic() < edge:
                    pass
            if orphaned():
                return
    raise SystemExit(f"unknown noise mode {mode!r}")


class Noise:
    """Starts the processes of one noise condition in their own process group; ``stop`` kills it."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = kind
        self.seed = seed
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        me = str(os.getpid())
        script = str(Path(__file__).resolve())
        if self.kind == "quiet":
            return
        if self.kind == "busy":
            cmds = [[sys.executable, script, NOISE_WORKER_FLAG, "busy", me]]
        elif self.kind == "flapping":
            start = f"{time.monotonic() + 0.2:.6f}"
            cmds = [[sys.executable, script, NOISE_WORKER_FLAG, "flap", me, str(i),
                     str(self.seed), start] for i in range(2)]
        else:
            raise ValueError(f"unknown noise {self.kind!r}; known: {', '.join(NOISES)}")
        for cmd in cmds:
            self.procs.append(subprocess.Popen(cmd, start_new_session=True,
                                               stdin=subprocess.DEVNULL))
        time.sleep(0.3)  # let them get going
        dead = [p.args for p in self.procs if p.poll() is not None]
        if dead:
            self.stop()
            raise RuntimeError(f"noise process exited at once: {dead}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            _kill_group(proc)
        self.procs = []

    def __enter__(self) -> "Noise":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group ``proc`` leads (it was started with a new session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# --------------------------------------------------------------------------- machine

def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu_model": model,
            "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_at_start": load}


def _work(n: int) -> int:
    s = 0
    for i in range(n):
        s ^= i
    return s


def calibrate(target_ms: float = FAST_TARGET_MS) -> int:
    """n for which the loop takes about ``target_ms`` in this interpreter (quiet machine)."""
    n = 1000
    for _ in range(4):
        best = math.inf
        for _ in range(50):
            t0 = time.perf_counter()
            _work(n)
            best = min(best, time.perf_counter() - t0)
        n = max(100, round(n * target_ms / (best * 1000.0)))
    return int(round(n, -2))


def quiet_ratio(n: int, workload: str, pairs: int = 400) -> dict[str, float]:
    """In-process timing of the slow / fast variant, alternating call by call."""
    slow_fn = ((lambda: _work(3 * n)) if workload == "3n"
               else (lambda: (_work(n), _work(n), _work(n))))
    slow, fast = [], []
    for _ in range(20):
        slow_fn(), _work(n)
    for _ in range(pairs):
        t0 = time.perf_counter()
        slow_fn()
        t1 = time.perf_counter()
        _work(n)
        t2 = time.perf_counter()
        slow.append(t1 - t0)
        fast.append(t2 - t1)
    med = _median
    return {"fast_ms": med(fast) * 1e3, "slow_ms": med(slow) * 1e3,
            "ratio_of_medians": med(slow) / med(fast), "ratio_of_minima": min(slow) / min(fast)}

# --------------------------------------------------------------------------- runs

def _median(xs: Sequence[float]) -> float:
    return _pct(xs, 50)


def _pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _system_busy_s() -> float | None:
    """CPU seconds all cores spent busy so far (not idle, iowait or steal), from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    steal = values[7] if len(values) > 7 else 0
    return (sum(values[:8]) - values[3] - values[4] - steal) / _TICKS


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0.0


class CpuAccount:
    """Splits the machine's busy CPU during one run: the run, the noise, everything else."""

    def __init__(self, noise_pids: Sequence[int]) -> None:
        self.noise_pids = list(noise_pids)
        self.wall = time.perf_counter()
        self.busy = _system_busy_s()
        self.children = self._own(resource.RUSAGE_CHILDREN)
        self.me = self._own(resource.RUSAGE_SELF)
        self.noise = sum(_proc_cpu_s(p) for p in self.noise_pids)

    @staticmethod
    def _own(who: int) -> float:
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    def finish(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.wall
        busy = _system_busy_s()
        run = self._own(resource.RUSAGE_CHILDREN) - self.children  # the pytest run, once waited
        me = self._own(resource.RUSAGE_SELF) - self.me
        noise = sum(_proc_cpu_s(p) for p in self.noise_pids) - self.noise
        if busy is None or self.busy is None or wall <= 0:
            return {"run_cores": run / wall if wall > 0 else None, "noise_cores": None,
                    "outside_cores": None}
        # /proc/stat counts in 10 ms ticks: clamp the rounding below zero
        outside = max(0.0, (busy - self.busy) - run - me - noise)
        return {"run_cores": run / wall, "noise_cores": noise / wall,
                "outside_cores": outside / wall}


@dataclass
class Setup:
    """What every run needs; ``noise`` and ``rep`` change as the run goes on."""

    python: str
    n: int
    workload: str
    timeout: float
    hwopt_args: list[str]
    benchmark_args: list[str]
    keep_dir: Path
    pythonpath: str | None = None  # the plugin snapshot, first on sys.path
    noise: str = ""
    noise_pids: list[int] = field(default_factory=list)
    rep: int = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
                    "PYTHONPATH"):
            env.pop(key, None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def test_file(self, template: str, **extra: Any) -> str:
        return template.format(n=self.n, work=WORK_SRC, slow=WORKLOADS[self.workload], **extra)


def _run_pytest(setup: Setup, args: list[str], cwd: Path
                ) -> tuple[int | None, float, str, dict[str, float | None]]:
    """``python -m pytest args`` in its own process group: exit code, wall s, output, CPU split."""
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
        _kill_group(proc)
        out, code = b"", None
    except BaseException:
        _kill_group(proc)
        raise
    wall = time.perf_counter() - t0
    return code, wall, out.decode(errors="replace")[-3000:], account.finish()


def run_hwopt(setup: Setup, budget: float) -> dict[str, Any]:
    """One pytest-hwopt verdict: a pytest run of one test with one speedup budget."""
    with tempfile.TemporaryDirectory(prefix="verdicts-hwopt-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text(PYTEST_INI)
        (d / "test_pair.py").write_text(setup.test_file(HWOPT_TEST, budget=budget))
        pytest_args = ["-p", "no:cacheprovider", "-p", "no:benchmark", "-q",
                       "--hwopt-device=cpu", "--hwopt-json=out.json", *setup.hwopt_args,
                       "test_pair.py"]
        code, wall, tail, cpu = _run_pytest(setup, pytest_args, d)
        rec: dict[str, Any] = {"tool": "hwopt", "budget": budget, "wall_s": wall,
                               "exit_code": code, "cpu": cpu}
        doc = None
        try:
            doc = json.loads((d / "out.json").read_text())
        except (OSError, ValueError) as exc:
            rec["error"] = f"no JSON ({'timed out' if code is None else type(exc).__name__})"
        if doc is not None:
            try:
                check = doc["checks"][0]
                test = doc["tests"][0]
                results = {r["variant"]: r for r in doc["results"]}
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
                # the exit code must agree with the JSON (0: passed, 1: failed)
                if code not in (0, 1) or (code == 0) != rec["passed"]:
                    rec["error"] = f"exit code {code} disagrees with passed={rec['passed']}"
            except (KeyError, IndexError, TypeError) as exc:
                rec["error"] = f"unexpected JSON: {exc!r}"
        if "error" in rec:
            rec["output_tail"] = tail
        rec["right"] = ("error" not in rec) and rec["passed"] == RIGHT[budget]
        if doc is not None and ("error" in rec or not rec["right"] or _far(rec)):
            setup.keep_dir.mkdir(parents=True, exist_ok=True)
            kept = setup.keep_dir / f"hwopt-{setup.noise}-{budget}-rep{setup.rep}.json"
            kept.write_text(json.dumps(doc, indent=1))
            rec["kept_json"] = str(kept)
        return rec


def _far(rec: dict[str, Any]) -> bool:
    """An interval wholly outside the budgets' band: confident, and far from the truth."""
    low, high = rec.get("low"), rec.get("high")
    return low is not None and high is not None and (low > max(BUDGETS) or high < min(BUDGETS))


def run_benchmark(setup: Setup) -> list[dict[str, Any]]:
    """One pytest-benchmark run; a verdict record for each budget from its median ratio."""
    with tempfile.TemporaryDirectory(prefix="verdicts-pb-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text(PYTEST_INI)
        (d / "test_pair.py").write_text(setup.test_file(BENCHMARK_TEST))
        pytest_args = ["-p", "no:cacheprovider", "-p", "no:hwopt", "-q",
                       "--benchmark-json=out.json", *setup.benchmark_args, "test_pair.py"]
        code, wall, tail, cpu = _run_pytest(setup, pytest_args, d)
        base: dict[str, Any] = {"tool": "pytest-benchmark", "wall_s": wall, "exit_code": code,
                                "cpu": cpu}
        try:
            doc = json.loads((d / "out.json").read_text())
            stats = {b["name"]: b["stats"] for b in doc["benchmarks"]}
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
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            base["error"] = ("timed out" if code is None
                             else f"no usable JSON: {type(exc).__name__}: {exc}")
        if "error" in base:
            base["output_tail"] = tail
        out = []
        for budget in BUDGETS:
            rec = dict(base, budget=budget)
            if "error" not in rec:
                rec["passed"] = rec["measured"] >= budget
                rec["right"] = rec["passed"] == RIGHT[budget]
            else:
                rec["right"] = False
            out.append(rec)
        return out


# --------------------------------------------------------------------------- report

HEADER = ("tool", "noise", "budget", "right verdict", "verdicts", "right", "wrong",
          "inconclusive", "CI outside 2.55-3.45", "errors", "median s/verdict", "p95 s/verdict",
          "measured ratio p5 / median / p95", "noise cores", "outside cores (runs > 0.25)")


def summary(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One table row per (tool, noise, budget)."""
    keys: list[tuple[str, str, float]] = []
    for r in records:
        k = (r["tool"], r["noise"], r["budget"])
        if k not in keys:
            keys.append(k)
    order = {t: i for i, t in enumerate(TOOLS)}
    norder = {t: i for i, t in enumerate(NOISES)}
    keys.sort(key=lambda k: (order.get(k[0], 9), norder.get(k[1], 9), k[2]))
    rows = []
    for tool, noise, budget in keys:
        rs = [r for r in records if (r["tool"], r["noise"], r["budget"]) == (tool, noise, budget)]
        ok = [r for r in rs if "error" not in r]
        right = sum(1 for r in ok if r["right"])
        incon = (str(sum(1 for r in ok if r.get("status") == "inconclusive"))
                 if tool == "hwopt" else "-")
        walls = [r["wall_s"] for r in rs]
        ratios = [r["measured"] for r in ok if r.get("measured") is not None]
        ratio_text = (f"{_pct(ratios, 5):.2f} / {_pct(ratios, 50):.2f} / {_pct(ratios, 95):.2f}"
                      if ratios else "-")
        noise_c = [r["cpu"]["noise_cores"] for r in rs
                   if (r.get("cpu") or {}).get("noise_cores") is not None]
        outside = [r["cpu"]["outside_cores"] for r in rs
                   if (r.get("cpu") or {}).get("outside_cores") is not None]
        outside_text = (f"{_median(outside):.2f} ({sum(1 for x in outside if x > OUTSIDE_LIMIT)})"
                        if outside else "-")
        rows.append([tool, noise, f"{budget:g}", "pass" if RIGHT[budget] else "fail",
                     str(len(rs)), str(right), str(len(ok) - right), incon,
                     str(sum(1 for r in ok if _far(r))) if tool == "hwopt" else "-",
                     str(len(rs) - len(ok)), f"{_median(walls):.2f}", f"{_pct(walls, 95):.2f}",
                     ratio_text, f"{_median(noise_c):.2f}" if noise_c else "-", outside_text])
    return rows


def markdown(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def wrong_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """One line per wrong or failed pytest-hwopt verdict: what it saw."""
    out = []
    for r in records:
        if r["tool"] != "hwopt" or (r["right"] and not _far(r)):
            continue
        if "error" in r:
            out.append(f"- {r['noise']} min={r['budget']} rep {r['rep']}: error: {r['error']}")
            continue
        rounds = r.get("rounds_ms") or {}
        per_round = [s / f for s, f in zip(rounds.get("slow", []), rounds.get("fast", []))
                     if f > 0]
        spread = (f"per-round ratios {min(per_round):.2f}-{max(per_round):.2f}"
                  if per_round else "")
        med = r.get("median_ms") or {}
        cont = r.get("contention") or {}
        out.append(
            f"- {'wrong' if not r['right'] else 'right, but far'}: "
            f"{r['noise']} min={r['budget']} rep {r['rep']}: {r['measured']:.2f}x "
            f"[{r['low']:.2f}, {r['high']:.2f}] {r['status']} after {r['rounds']} rounds "
            f"({r['stopped']}); {spread}; median fast {med.get('fast', math.nan):.3f} ms, "
            f"slow {med.get('slow', math.nan):.3f} ms; hwopt contention "
            f"{cont.get('other_busy_cores', math.nan):.2f} cores; outside load "
            f"{(r.get('cpu') or {}).get('outside_cores') or 0:.2f} cores")
    return out


def report(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    cal = doc["calibration"]
    q = cal.get("quiet_ratio") or {}
    snap = doc.get("plugin") or {}
    parts = [
        f"date: {doc['started']}  (finished {doc.get('finished', 'not finished')}, "
        f"{doc.get('total_s', math.nan) / 60:.1f} min)",
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}), CPU: {m['cpu_model']}, "
        f"{m['platform']}, Python {m['python']}",
        f"versions: {', '.join(f'{k} {v}' for k, v in doc.get('versions', {}).items())}",
        f"pytest-hwopt code: {snap.get('mode', '?')} {snap.get('source', '')} "
        f"sha256 {str(snap.get('sha256', '?'))[:16]}",
        f"command: {doc['command']}",
        f"workload: fast = work(n), slow = {WORKLOADS[cal.get('workload', '3n')]}, "
        f"n={cal['n']} (true speedup {TRUE_RATIO}); in-process check at start: fast "
        f"{q.get('fast_ms', math.nan):.3f} ms, slow {q.get('slow_ms', math.nan):.3f} ms, "
        f"ratio of medians {q.get('ratio_of_medians', math.nan):.3f}",
        "",
        markdown(summary(doc["runs"])),
    ]
    wrong = wrong_lines(doc["runs"])
    if wrong:
        parts += ["", "pytest-hwopt verdicts that were wrong, failed, or whose interval lies "
                  "wholly outside 2.55-3.45:", *wrong]
    return "\n".join(parts)


# --------------------------------------------------------------------------- main

def _parse_reps(text: str, tools: Sequence[str]) -> dict[str, int]:
    text = text.strip()
    if "=" not in text:
        return {t: int(text) for t in tools}
    reps = {t: 0 for t in tools}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in TOOLS:
            raise SystemExit(f"--repetitions: unknown tool {name!r}; known: {', '.join(TOOLS)}")
        if name in reps:
            reps[name] = int(value)
    return reps


_PROBE = r'''
import json, sys
from importlib import metadata
out = {}
for dist in ("pytest", "pytest-hwopt", "pytest-benchmark"):
    try:
        out[dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
        pass
out["_entry_points"] = sorted({ep.name for ep in metadata.entry_points(group="pytest11")})
try:
    import pytest_hwopt.plugin, os
    out["_package"] = os.path.dirname(os.path.abspath(pytest_hwopt.__file__))
except Exception as exc:
    out["_import_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
'''


def _probe(python: str, pythonpath: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    try:
        res = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True,
                             timeout=60, env=env, cwd=tempfile.gettempdir())
        found: dict[str, Any] = json.loads(res.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"verdicts.py: cannot query the interpreter {python!r}: {exc}")
    return found


def _check_installed(python: str, tools: Sequence[str]) -> dict[str, Any]:
    """Versions of pytest and the plugins and where pytest_hwopt lives, or exit clearly."""
    found = _probe(python, None)
    problems = []
    if "pytest" not in found:
        problems.append("pytest is not installed")
    if "hwopt" in tools and ("pytest-hwopt" not in found or "hwopt" not in found["_entry_points"]):
        problems.append("pytest-hwopt is not installed (no pytest11 entry point 'hwopt'); "
                        "install it with `pip install -e .` from the repository root")
    elif "hwopt" in tools and "_package" not in found:
        problems.append(f"pytest_hwopt does not import: {found.get('_import_error')}")
    if "pytest-benchmark" in tools and "pytest-benchmark" not in found:
        problems.append("pytest-benchmark is not installed (`pip install pytest-benchmark`), "
                        "or leave it out with --tools hwopt")
    if problems:
        raise SystemExit(f"verdicts.py: with interpreter {python}:\n  " + "\n  ".join(problems)
                         + "\n(use --python to name another interpreter, e.g. .venv/bin/python)")
    return found


def _tree_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def snapshot_plugin(python: str, package: Path, dest: Path, tries: int = 5) -> dict[str, Any]:
    """Copy the pytest_hwopt package under ``dest`` and check that the copy imports.

    Retried a few times: someone may be in the middle of editing the package.
    """
    last = ""
    for attempt in range(tries):
        target = dest / "pytest_hwopt"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        found = _probe(python, str(dest))
        where = found.get("_package")
        if where and Path(where).resolve() == target.resolve():
            return {"mode": "snapshot of", "source": str(package), "copy": str(target),
                    "sha256": _tree_sha256(target), "attempts": attempt + 1}
        last = found.get("_import_error") or f"imported from {where}, not the copy"
        time.sleep(5)
    raise SystemExit(f"verdicts.py: the copy of {package} does not import: {last} "
                     "(pass --live-plugin to use the installed package as it is)")


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def _schedule(reps: dict[str, int], tools: Sequence[str]) -> Iterator[tuple[int, str]]:
    """Tools interleaved repetition by repetition, each until its own count."""
    for rep in range(max(reps.values(), default=0)):
        for tool in tools:
            if rep < reps[tool]:
                yield rep, tool


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == NOISE_WORKER_FLAG:
        _noise_worker(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repetitions", default="hwopt=100,pytest-benchmark=30",
                   help="verdicts per (tool, noise, budget): N for every tool, or "
                        "TOOL=N,TOOL=N (default: hwopt=100,pytest-benchmark=30)")
    p.add_argument("--noise", default=",".join(NOISES),
                   help=f"comma-separated conditions (default: {','.join(NOISES)})")
    p.add_argument("--tools", default=",".join(TOOLS),
                   help=f"comma-separated tools (default: {','.join(TOOLS)})")
    p.add_argument("--out", default="verdicts-results.json",
                   help="JSON with the raw per-run data (default: verdicts-results.json)")
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="3n",
                   help="slow variant: '3n' one call of work(3n) (default), 'repeat' three "
                        "calls of work(n)")
    p.add_argument("--n", type=int, default=None,
                   help=f"loop iterations of the fast variant (default: calibrated to about "
                        f"{FAST_TARGET_MS} ms)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs pytest (default: this one)")
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
    args = p.parse_args(argv)

    if args.table_from:
        print(report(json.loads(Path(args.table_from).read_text())))
        return 0

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    noises = [x.strip() for x in args.noise.split(",") if x.strip()]
    for t in tools:
        if t not in TOOLS:
            p.error(f"unknown tool {t!r}; known: {', '.join(TOOLS)}")
    for x in noises:
        if x not in NOISES:
            p.error(f"unknown noise {x!r}; known: {', '.join(NOISES)}")
    reps = _parse_reps(args.repetitions, tools)
    found = _check_installed(args.python, tools)
    versions = {k: v for k, v in found.items() if not k.startswith("_")}
    out = Path(args.out)
    keep = Path(args.keep_dir) if args.keep_dir else out.with_name(
        (out.name[:-5] if out.name.endswith(".json") else out.name) + ".wrong")

    # SIGTERM / SIGHUP unwind like Ctrl-C, so the finally below kills the noise
    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)

    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    info = machine()
    print(f"machine: nproc={info['nproc']} (cpu_count={info['cpu_count']}), "
          f"CPU: {info['cpu_model']}, {info['platform']}, Python {info['python']}", flush=True)
    print(f"command: {command}", flush=True)

    snapdir = tempfile.mkdtemp(prefix="verdicts-plugin-")
    noise: Noise | None = None
    doc: dict[str, Any] = {}
    t_start = time.perf_counter()
    try:
        if "hwopt" in tools and not args.live_plugin:
            plugin = snapshot_plugin(args.python, Path(found["_package"]), Path(snapdir))
            pythonpath: str | None = snapdir
        else:
            pkg = found.get("_package")
            plugin = {"mode": "live", "source": pkg,
                      "sha256": _tree_sha256(Path(pkg)) if pkg else None}
            pythonpath = None
        print(f"pytest-hwopt code: {plugin['mode']} {plugin['source']} "
              f"(sha256 {str(plugin['sha256'])[:16]})", flush=True)
        n = args.n or calibrate()
        qr = quiet_ratio(n, args.workload)
        print(f"workload: fast = work(n), slow = {WORKLOADS[args.workload]}, n={n} "
              f"(fast {qr['fast_ms']:.3f} ms, slow {qr['slow_ms']:.3f} ms, in-process ratio "
              f"of medians {qr['ratio_of_medians']:.3f})", flush=True)
        print(f"repetitions: {reps}; noise: {noises}; tools: {tools}", flush=True)
        setup = Setup(args.python, n, args.workload, args.timeout,
                      shlex.split(args.hwopt_args), shlex.split(args.benchmark_args), keep,
                      pythonpath)
        doc = {
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command, "machine": info, "versions": versions, "plugin": plugin,
            "calibration": {"n": n, "workload": args.workload, "fast_target_ms": FAST_TARGET_MS,
                            "quiet_ratio": qr},
            "true_ratio": TRUE_RATIO,
            "budgets": {str(b): ("pass" if RIGHT[b] else "fail") for b in BUDGETS},
            "repetitions": reps, "noise": noises, "tools": tools,
            "settings": {"timeout_s": args.timeout, "seed": args.seed,
                         "hwopt_args": setup.hwopt_args, "benchmark_args": setup.benchmark_args,
                         "outside_limit_cores": OUTSIDE_LIMIT},
            "runs": [],
        }
        for ni, kind in enumerate(noises):
            noise = Noise(kind, args.seed + ni)
            noise.start()
            setup.noise, setup.noise_pids = kind, noise.pids()
            t_cond = time.perf_counter()
            done = 0
            total = sum(reps[t] * (len(BUDGETS) if t == "hwopt" else 1) for t in tools)
            for rep, tool in _schedule(reps, tools):
                setup.rep = rep
                if tool == "hwopt":
                    # alternate the budgets' order between repetitions
                    budgets = BUDGETS if rep % 2 == 0 else BUDGETS[::-1]
                    recs = [run_hwopt(setup, b) for b in budgets]
                    done += len(recs)
                else:
                    recs = run_benchmark(setup)
                    done += 1
                for r in recs:
                    r.update(noise=kind, rep=rep)
                    doc["runs"].append(r)
                    mark = "ok " if r["right"] else ("ERR" if "error" in r else "BAD")
                    extra = f" status={r.get('status')}" if tool == "hwopt" else ""
                    measured = r.get("measured")
                    mtext = f"{measured:.3f}" if isinstance(measured, (int, float)) else "-"
                    outside = (r.get("cpu") or {}).get("outside_cores")
                    print(f"[{kind} {done}/{total}] {mark} {tool} min={r['budget']} "
                          f"ratio={mtext}{extra} passed={r.get('passed')} {r['wall_s']:.2f}s "
                          f"outside={outside if outside is None else round(outside, 2)}"
                          + (f" error={r['error']}" if "error" in r else ""), flush=True)
                if rep % 5 == 4:
                    _write(out, doc)
            noise.stop()
            noise = None
            print(f"[{kind}] done in {time.perf_counter() - t_cond:.0f}s", flush=True)
            _write(out, doc)
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", file=sys.stderr, flush=True)
        doc["interrupted"] = True
    finally:
        if noise is not None:
            noise.stop()
        shutil.rmtree(snapdir, ignore_errors=True)
        if doc:
            doc["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
            doc["total_s"] = time.perf_counter() - t_start
            _write(out, doc)
    if not doc:
        return 1
    print()
    print(report(doc))
    print(f"\nraw per-run data: {out}" + (f"; full --hwopt-json of those verdicts: {keep}/"
                                         if keep.exists() else ""))
    return 1 if doc.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
