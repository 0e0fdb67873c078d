"""The thread count every variant runs with, how it was chosen, and the pools it governs.

Chosen once per session (:func:`choose`): ``--hwopt-threads`` when given, else the cores that
were idle when the run started, never more than this process may use (its CPU affinity and,
in a container, its cgroup CPU quota). Idle cores are measured from ``/proc/stat``: CPU time
the other processes used on this process's CPUs over a short window (:func:`idle_cpus`).

Applied around each measured run (:func:`limited`) to every pool a Python variant may touch:
PyTorch's intra-op and inter-op pools and, through ``threadpoolctl``, the BLAS and OpenMP
pools of NumPy, SciPy, PyTorch's OpenMP runtime and others. ONNX Runtime and OpenVINO take
the count when their session is made (``backends.ort``, ``backends.openvino_backend``).

Why: on a 2-core machine with a busy neighbour, 2-thread eager PyTorch slowed 3-12x (its
OpenMP barrier waits for the preempted thread) while ONNX Runtime slowed 1.4x, and a numpy
dot whose BLAS pool kept 2 threads lost 900x; with one thread per pool the ratios held
within a few percent (measured on a 2-core CI machine; README, "Threads").

Nothing here imports torch or numpy: PyTorch is governed only if the test already imported
it, and threadpoolctl only sees libraries already loaded.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: the shortest window over which idle cores are measured, s: 10 clock ticks per CPU at
#: Linux's usual 100 Hz, so one busy core reads 1.0 +- 0.1
MIN_WINDOW_S: Final = 0.1
#: a window older than this (a long collection, other tests first) is replaced by a fresh
#: one of :data:`MIN_WINDOW_S`, so that the count reflects the machine when measuring starts
MAX_WINDOW_S: Final = 1.0
#: CPU time of other processes, in cores, that takes no core away: below a quarter of a core
#: (the level ``core.contention`` calls contended), and the tick rounding of a short window
NEIGHBOUR_SLACK: Final = 0.25


@dataclass(frozen=True)
class CpuTimes:
    """One read of ``/proc/stat`` and of this process's CPU time.

    ``total`` and ``busy`` map a CPU's number to clock ticks since boot: all of them, and
    those not idle (user, nice, system, irq, softirq and steal: a stolen tick is not
    available to us either; idle and iowait are idle). ``own_cpu_s`` is this process's
    CPU time (every thread, user + system), ``wall_s`` a monotonic clock, both in seconds.
    """

    wall_s: float
    own_cpu_s: float
    total: Mapping[int, int]
    busy: Mapping[int, int]


@dataclass(frozen=True)
class IdleCores:
    """Idle cores among this process's CPUs over a window (:func:`idle_cpus`)."""

    idle: int  # whole cores left idle by other processes, >= 0
    cpus: int  # the CPUs looked at (this process's affinity)
    others_cores: float  # CPU time of other processes over the window, in cores
    window_s: float


@dataclass(frozen=True)
class ThreadChoice:
    """The count every pool runs with, and how it was chosen.

    ``source`` reads e.g. ``"option"`` (``--hwopt-threads``), ``"idle cores (1 of 2 idle
    at start)"``, or ``"usable cores (2; idle cores unknown: no /proc/stat)"``.
    """

    count: int
    source: str


def parse_proc_stat(text: str) -> tuple[dict[int, int], dict[int, int]]:
    """Per-CPU ``(total, busy)`` clock ticks from the text of ``/proc/stat``.

    Reads the ``cpuN`` lines (``user nice system idle iowait irq softirq steal guest
    guest_nice``, proc(5)); guest time is already inside user time, so the total is the sum
    of the first eight fields. A malformed line is skipped.
    """
    total: dict[int, int] = {}
    busy: dict[int, int] = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            cpu = int(name[3:])
            ticks = [int(v) for v in fields[:8]]
        except ValueError:
            continue
        if len(ticks) < 4:
            continue
        ticks += [0] * (8 - len(ticks))
        idle = ticks[3] + ticks[4]
        total[cpu] = sum(ticks)
        busy[cpu] = total[cpu] - idle
    return total, busy


def read_cpu_times(stat_path: Path = Path("/proc/stat")) -> CpuTimes | None:
    """Per-CPU ticks and this process's CPU time now; None where ``/proc/stat`` is missing
    or unreadable (not Linux)."""
    try:
        text = stat_path.read_text()
    except OSError:
        return None
    total, busy = parse_proc_stat(text)
    if not total:
        return None
    return CpuTimes(time.monotonic(), time.process_time(), total, busy)


def idle_cpus(before: CpuTimes, after: CpuTimes, cpus: set[int]) -> IdleCores | None:
    """Cores of ``cpus`` that other processes left idle between two reads.

    Other processes' CPU time is the busy ticks of ``cpus`` minus this process's own CPU
    time (it can run on those CPUs only), in cores: divided by the mean ticks that passed
    per CPU. A core is taken once that exceeds :data:`NEIGHBOUR_SLACK`:
    ``idle = cpus - ceil(others - slack)``, e.g. others at 0.2 cores leave 2 of 2 idle,
    0.9 or 1.2 leave 1. None when the reads share no CPU or no tick passed.
    """
    seen = [c for c in sorted(cpus) if c in before.total and c in after.total]
    if not seen:
        return None
    ticks = sum(after.total[c] - before.total[c] for c in seen)
    busy = sum(after.busy[c] - before.busy[c] for c in seen)
    window_s = after.wall_s - before.wall_s
    if ticks <= 0 or window_s <= 0:
        return None
    per_cpu = ticks / len(seen)  # ticks that passed on one CPU
    tick_s = window_s / per_cpu
    own_ticks = max(0.0, after.own_cpu_s - before.own_cpu_s) / tick_s
    others = max(0.0, busy - own_ticks) / per_cpu
    taken = math.ceil(others - NEIGHBOUR_SLACK) if others > NEIGHBOUR_SLACK else 0
    return IdleCores(max(0, len(seen) - taken), len(seen), others, window_s)


def affinity() -> set[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup"),
              self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The cgroup v2 CPU quota of this process in cores (``cpu.max``: quota / period, the
    smallest along its cgroup and the cgroups above it), or None when there is none or it
    cannot be read (cgroup v1, not Linux). ``docker run --cpus=1.5`` reads 1.5."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return None
    quota: float | None = None
    here = cgroup_root / path.lstrip("/")
    while True:
        try:
            limit, period = (here / "cpu.max").read_text().split()[:2]
            if limit != "max" and float(period) > 0:
                cores = float(limit) / float(period)
                quota = cores if quota is None else min(quota, cores)
        except (OSError, ValueError):
            pass
        if here == cgroup_root or cgroup_root not in here.parents:
            return quota
        here = here.parent


def choose(option: int | None, start: CpuTimes | None, now: CpuTimes | None,
           cpus: set[int], quota: float | None = None) -> ThreadChoice:
    """The session's thread count.

    ``option`` (``--hwopt-threads``) wins as given. Else the idle cores among ``cpus``
    between the reads ``start`` and ``now`` (:func:`idle_cpus`), at most ``quota`` cores
    rounded down, and at least 1. Without reads: the usable cores (affinity, quota).
    """
    if option is not None:
        return ThreadChoice(option, "option")
    usable = len(cpus)
    capped = ""
    if quota is not None and math.floor(quota) < usable:
        usable = max(1, math.floor(quota))
        capped = f"; CPU quota {quota:g} cores"
    idle = idle_cpus(start, now, cpus) if start is not None and now is not None else None
    if idle is None:
        return ThreadChoice(usable, f"usable cores ({usable}; idle cores unknown: "
                                    f"no /proc/stat{capped})")
    count = max(1, min(usable, idle.idle))
    return ThreadChoice(count, f"idle cores ({idle.idle} of {idle.cpus} idle at start{capped})")


class IdleSampler:
    """Chooses the session's count once, on first need, from a window opened at start.

    :meth:`start` (at session start) takes the first read; :meth:`choice` the second, after
    waiting until :data:`MIN_WINDOW_S` has passed since the first, so that a collection
    longer than that costs nothing. A first read older than :data:`MAX_WINDOW_S` is
    replaced by a fresh one. ``read``, ``sleep``, ``clock``, ``cpus`` and ``quota`` are
    the collaborators (fakes in tests); ``clock`` must be the clock of ``read``'s
    ``wall_s``.
    """

    def __init__(self, option: int | None, *,
                 read: Callable[[], CpuTimes | None] = read_cpu_times,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 cpus: Callable[[], set[int]] = affinity,
                 quota: Callable[[], float | None] = cpu_quota) -> None:
        self.option = option
        self._read, self._sleep, self._clock = read, sleep, clock
        self._cpus, self._quota = cpus, quota
        self._start: CpuTimes | None = None
        self._choice: ThreadChoice | None = None

    def start(self) -> None:
        """Open the window (one read of ``/proc/stat``); nothing to do with an option."""
        if self.option is None and self._start is None and self._choice is None:
            self._start = self._read()

    def choice(self) -> ThreadChoice:
        """The count, chosen on the first call and kept."""
        if self._choice is None:
            self._choice = self._choose()
        return self._choice

    def _choose(self) -> ThreadChoice:
        if self.option is not None:
            return ThreadChoice(self.option, "option")
        start = self._start
        if start is None or self._clock() - start.wall_s > MAX_WINDOW_S:
            start = self._read()
        now = None
        if start is not None:
            self._sleep(max(0.0, MIN_WINDOW_S - (self._clock() - start.wall_s)))
            now = self._read()
        return choose(None, start, now, self._cpus(), self._quota())


def _set_interop(torch: Any, count: int) -> None:
    """PyTorch's inter-op pool at ``count``: possible once per process, before inter-op
    parallel work starts; later attempts raise ``RuntimeError`` and leave what is in force
    (which :func:`in_force` records)."""
    if torch.get_num_interop_threads() == count:
        return
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(count)


def in_force(controller: Any | None = None) -> dict[str, int]:
    """Threads per pool now: ``torch`` (intra-op) and ``torch_interop`` when PyTorch is
    loaded, then each library threadpoolctl finds, by its prefix (``libscipy_openblas``,
    ``libgomp``, ``libmkl_rt``, ...; the largest count where a prefix loads twice)."""
    pools: dict[str, int] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        pools["torch"] = int(torch.get_num_threads())
        pools["torch_interop"] = int(torch.get_num_interop_threads())
    if controller is None:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
    for lib in controller.info():
        prefix = str(lib.get("prefix") or lib.get("internal_api") or "library")
        pools[prefix] = max(pools.get(prefix, 0), int(lib.get("num_threads") or 0))
    return pools


@contextlib.contextmanager
def limited(count: int) -> Iterator[dict[str, int]]:
    """Every pool at ``count`` threads inside the block; yields the pools in force there.

    PyTorch's intra-op count is set (and restored on exit) if PyTorch is loaded, its
    inter-op count set when the process still allows it; the BLAS and OpenMP pools of the
    loaded libraries are limited with ``threadpoolctl.ThreadpoolController.limit`` and
    restored on exit. Raises ``ValueError`` for a count below 1.
    """
    if count < 1:
        raise ValueError(f"thread count must be >= 1, got {count}")
    from threadpoolctl import ThreadpoolController

    torch = sys.modules.get("torch")
    previous = int(torch.get_num_threads()) if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(count)
            _set_interop(torch, count)
        controller = ThreadpoolController()
        with controller.limit(limits=count):
            yield in_force(controller)
    finally:
        if torch is not None and previous is not None:
            torch.set_num_threads(previous)
