"""Who used the CPU during one run: the run itself, the noise, everything else.

Linux only for the split (``/proc/stat``, ``/proc/PID/stat``); elsewhere the
noise and outside figures are ``None``. All figures are in cores: CPU seconds
per wall second.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from benchmarks.verdicts.records import CpuSplit

OUTSIDE_LIMIT: Final = 0.25  # cores of outside load above which a run counts as disturbed

_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def system_busy_s() -> float | None:
    """CPU seconds all cores spent busy so far (not idle, iowait or steal), from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    steal = values[7] if len(values) > 7 else 0
    return (sum(values[:8]) - values[3] - values[4] - steal) / _TICKS


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far; 0.0 if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0.0


def _own_cpu_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class CpuAccount:
    """Splits the machine's busy CPU between creation and :meth:`finish`.

    Create it just before starting the run's subprocess, call ``finish`` once
    it has been waited for (its CPU then counts in ``RUSAGE_CHILDREN``).
    ``noise_pids``: the noise workers to count apart.
    """

    def __init__(self, noise_pids: Sequence[int]) -> None:
        self.noise_pids = list(noise_pids)
        self.wall = time.perf_counter()
        self.busy = system_busy_s()
        self.children = _own_cpu_s(resource.RUSAGE_CHILDREN)
        self.me = _own_cpu_s(resource.RUSAGE_SELF)
        self.noise = sum(process_cpu_s(p) for p in self.noise_pids)

    def finish(self) -> CpuSplit:
        """The split since creation, in cores (see ``records.CpuSplit``)."""
        wall = time.perf_counter() - self.wall
        busy = system_busy_s()
        run = _own_cpu_s(resource.RUSAGE_CHILDREN) - self.children  # the pytest run, once waited
        me = _own_cpu_s(resource.RUSAGE_SELF) - self.me
        noise = sum(process_cpu_s(p) for p in self.noise_pids) - self.noise
        if busy is None or self.busy is None or wall <= 0:
            return {"run_cores": run / wall if wall > 0 else None, "noise_cores": None,
                    "outside_cores": None}
        # /proc/stat counts in 10 ms ticks: clamp the rounding below zero
        outside = max(0.0, (busy - self.busy) - run - me - noise)
        return {"run_cores": run / wall, "noise_cores": noise / wall,
                "outside_cores": outside / wall}
