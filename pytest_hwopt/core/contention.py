"""What explains noise on a CPU: other processes' load, steal time, page faults, preemption.

Reads Linux ``/proc``; elsewhere the figures are ``None`` rather than guessed. Per run:
:func:`snapshot` / :func:`contention` (other processes' CPU time, steal). Per sample:
:class:`Preemption`, which tells the timers whether a sample was kept from a CPU.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

CONTENDED_CORES = 0.25  # other processes using more than a quarter of a core
CONTENDED_STEAL = 0.05  # or the hypervisor stealing more than 5% of the time
#: a run whose own CPU time over its wall time stays under this used one core at a time
#: (2-core CI machine: a pure-Python loop reads 0.99 beside a busy neighbour; ONNX Runtime
#: vs eager PyTorch with two threads per pool 1.76-1.84 quiet, 1.12-1.21 beside one)
ONE_CORE = 1.05
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy_s: float | None  # all cores, all processes
    steal_s: float | None
    total_s: float | None
    own_cpu_s: float


@dataclass(frozen=True)
class Contention:
    """CPU activity outside this process during a measurement, and this process's own
    (``own_cores``: its CPU time over the wall time, every thread; None where unknown)."""

    other_busy_cores: float | None
    steal_fraction: float | None
    load1: float | None
    own_cores: float | None = None

    @property
    def contended(self) -> bool:
        return bool((self.other_busy_cores or 0) > CONTENDED_CORES
                    or (self.steal_fraction or 0) > CONTENDED_STEAL)

    def to_dict(self) -> dict[str, Any]:
        return {"other_busy_cores": self.other_busy_cores, "steal_fraction": self.steal_fraction,
                "load1": self.load1, "own_cores": self.own_cores,
                "contended": self.contended}


def snapshot(stat_path: Path = Path("/proc/stat")) -> CpuSnapshot:
    """Read system-wide and own CPU time now."""
    times = os.times()
    own = times.user + times.system
    busy = steal = total = None
    try:
        fields = stat_path.read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) / _TICKS for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)
        steal = values[7] if len(values) > 7 else 0.0
        # guest time is already counted in user time
        total = sum(values[:8])
        busy = total - idle - steal
    except (OSError, ValueError, IndexError):
        pass
    return CpuSnapshot(time.perf_counter(), busy, steal, total, own)


def contention(before: CpuSnapshot, after: CpuSnapshot) -> Contention:
    """Cores kept busy by other processes, and the steal fraction, between two snapshots."""
    wall = after.wall - before.wall
    load1 = _load1()
    own = after.own_cpu_s - before.own_cpu_s
    own_cores = own / wall if wall > 0 else None
    if before.busy_s is None or after.busy_s is None or wall <= 0:
        return Contention(None, None, load1, own_cores)
    others = (after.busy_s - before.busy_s) - own
    total = (after.total_s or 0) - (before.total_s or 0)
    steal = (after.steal_s or 0) - (before.steal_s or 0)
    # /proc/stat ticks are coarse (10 ms): clamp the rounding below zero
    return Contention(max(0.0, others / wall), (steal / total) if total > 0 else 0.0, load1,
                      own_cores)


def oversubscribed(c: Contention, threads: int, cores: int) -> str:
    """Why a run whose pools had ``threads`` threads each cannot stand for a quiet machine of
    ``cores`` cores (all of the machine's, the scope of ``/proc/stat``), or "".

    A pool with fewer free cores than threads waits at every barrier for the thread the
    scheduler gave a neighbour's core, and runtimes suffer it unequally, so no per-sample
    filter recovers the quiet ratio: with two threads per pool and one busy neighbour on a
    2-core machine, ONNX Runtime vs eager PyTorch on a small MLP read 2.0-2.4x (tight
    intervals) from samples with no involuntary switch and no run-queue wait, against 1.6x
    quiet. So such a run decides nothing: free cores (``cores - other_busy_cores``) plus
    :data:`CONTENDED_CORES` must cover ``threads``. Work that used no more than
    :data:`ONE_CORE` cores of its own (pure Python, whatever the pools' size) is
    single-threaded: it is judged per sample instead (:class:`Preemption`); without
    ``/proc/stat`` nothing is said.
    """
    if threads <= 1 or c.other_busy_cores is None:
        return ""
    if c.own_cores is not None and c.own_cores <= ONE_CORE:
        return ""
    if cores - c.other_busy_cores + CONTENDED_CORES >= threads:
        return ""
    return (f"machine busy: other processes kept {c.other_busy_cores:.2f} of {cores} cores "
            f"busy while every pool ran {threads} threads")


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt



# ---- per sample: was the process kept from a CPU? ------------------------------------------

#: ``(involuntary context switches of the process, run-queue wait of its threads in ns)`` at
#: one moment; the wait reads 0 where the kernel does not expose it
SchedCounters = tuple[int, int]
#: reads :data:`SchedCounters` now
SchedReader = Callable[[], SchedCounters]

#: a run-queue wait under this is a wake-up's latency, not a neighbour's time slice
#: (idle 2-core CI machine: 99% of 0.1 ms sleeps woke after < 5 us, the longest after 28 us;
#: a time slice lost to a neighbour is 0.75-3 ms)
WAIT_FLOOR_NS: Final = 20_000
#: and a wait counts only when it is also more than this fraction of the sample
WAIT_FRACTION: Final = 0.01


class DisturbanceProbe(Protocol):
    """What a timer asks, per sample, of a probe of the scheduler (fakes fit it in tests)."""

    def reading(self) -> AbstractContextManager[SchedReader]:
        """A reader of the counters, bound to the calling thread, for one block of samples."""
        ...

    def disturbed(self, before: SchedCounters, after: SchedCounters, seconds: float) -> bool:
        """Whether a sample of ``seconds`` between two readings was disturbed."""
        ...


#: sample length per involuntary switch allowed: even an idle machine switches a long sample
#: out now and then (kernel threads, timers; about 30 per second of a spinning loop on the
#: 2-core CI machine with one other core busy, so every 100 ms sample had 1-3 and a rule of
#: "any switch" left no 100 ms sample clean); the time those switches cost the timing
#: thread is caught by its run-queue wait instead. Below this length any switch disturbs.
SWITCH_ALLOWANCE_S: Final = 0.02


class Preemption:
    """Per-sample evidence that the process was preempted or waited for a CPU (Linux).

    Two counters bracket each sample:

    - involuntary context switches of the whole process
      (``getrusage(RUSAGE_SELF).ru_nivcsw``, every thread: covers runtimes with their own
      thread pools): any switch in a sample shorter than :data:`SWITCH_ALLOWANCE_S`
      disturbs it, and a longer sample is allowed one switch per such span;
    - run-queue wait of the process's threads, summed (``/proc/thread-self/schedstat`` and
      ``/proc/self/task/*/schedstat``, second field, ns): catches a thread that slept (a
      device synchronisation, a pool's join, an OpenMP worker parked between calls) and then
      waited for a neighbour's time slice to end, which is no involuntary switch. The pool's
      threads count because the calling thread spins at the pool's barrier while a worker
      waits: with two PyTorch threads and one busy neighbour on a 2-core machine, eager
      samples with no involuntary switch and no wait of the calling thread still read 0.59 ms
      against 0.15 ms quiet (a false 6.0x speedup for ONNX Runtime, true 1.66x). A wait
      counts above :data:`WAIT_FLOOR_NS` and :data:`WAIT_FRACTION` of the sample.

    Why: on the 2-core CI machine, with a busy neighbour on each core, a 1 ms / 3 ms pair
    (true ratio 3.07) read 5.88x by wall clock and 3.05-3.10x on the samples with no
    involuntary switch (``docs/measurement.md``, "Per-sample evidence works").

    Not per sample: steal time. A guest cannot tell a slice the hypervisor stole from a
    voluntary sleep within one sample, and ``/proc/stat`` counts steal in 10 ms ticks;
    steal is measured per run (:func:`contention`).

    Cost: one reading (both counters) takes about 4.4 us on the 2-core CI machine (1.6 us
    ``getrusage``, 1.7 us ``pread``, the rest Python). Timers read once between samples,
    outside the timed region, so it adds about 4% to the wall time of the shortest
    (0.1 ms) samples and nothing to their measured time. Without ``/proc`` (other systems,
    a kernel without schedstats) the wait reads 0 and the switches alone decide.
    """

    def __init__(self, proc: Path = Path("/proc"), wait_floor_ns: int = WAIT_FLOOR_NS,
                 wait_fraction: float = WAIT_FRACTION) -> None:
        self._proc = proc
        self.wait_floor_ns = wait_floor_ns
        self.wait_fraction = wait_fraction

    @contextmanager
    def reading(self) -> Iterator[SchedReader]:
        """A reader for the calling thread and the process's other threads alive now; their
        ``schedstat`` files stay open for the block (a thread started later is not seen, one
        that ends reads 0)."""
        fd = self._open_schedstat()
        fds = [] if fd is None else [fd, *self._open_other_threads()]
        usage, own = resource.getrusage, resource.RUSAGE_SELF

        def switches_only() -> SchedCounters:
            return usage(own).ru_nivcsw, 0

        def both() -> SchedCounters:
            wait = 0
            for each in fds:
                try:
                    wait += int(os.pread(each, 64, 0).split(maxsplit=2)[1])
                except (OSError, ValueError, IndexError):
                    pass
            return usage(own).ru_nivcsw, wait

        try:
            yield switches_only if fd is None else both
        finally:
            for each in fds:
                os.close(each)

    def _open_other_threads(self) -> list[int]:
        """Open ``schedstat`` of every other thread of this process (a runtime's pool)."""
        me = str(threading.get_native_id())
        task = self._proc / "self" / "task"
        try:
            tids = [t for t in os.listdir(task) if t != me]
        except OSError:
            return []
        fds = []
        for tid in tids:
            try:
                fds.append(os.open(task / tid / "schedstat", os.O_RDONLY))
            except OSError:
                continue  # ended since the listing
        return fds

    def disturbed(self, before: SchedCounters, after: SchedCounters, seconds: float) -> bool:
        """More involuntary switches than the sample's allowance (none below
        :data:`SWITCH_ALLOWANCE_S`, one more per such span of a longer sample), or a run-queue
        wait over the floor and the fraction."""
        if after[0] - before[0] > int(seconds / SWITCH_ALLOWANCE_S):
            return True
        wait = after[1] - before[1]
        return wait > self.wait_floor_ns and wait > self.wait_fraction * seconds * 1e9

    def _open_schedstat(self) -> int | None:
        # thread-self (Linux 3.17+) resolves to the calling thread when opened
        for path in (self._proc / "thread-self" / "schedstat",
                     self._proc / "self" / "task" / str(threading.get_native_id()) / "schedstat"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                int(os.pread(fd, 64, 0).split(maxsplit=2)[1])
            except (OSError, ValueError, IndexError):
                os.close(fd)
                continue
            return fd
        return None


class Undisturbed:
    """A probe that never flags a sample: for timing where the host's scheduling does not
    reach the figure, or to switch the filter off."""

    @contextmanager
    def reading(self) -> Iterator[SchedReader]:
        yield lambda: (0, 0)

    def disturbed(self, before: SchedCounters, after: SchedCounters, seconds: float) -> bool:
        return False
