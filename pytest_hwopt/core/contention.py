"""What explains noise on a CPU: other processes' load, steal time, page faults.

Reads Linux ``/proc``; elsewhere the figures are ``None`` rather than guessed.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTENDED_CORES = 0.25  # other processes using more than a quarter of a core
CONTENDED_STEAL = 0.05  # or the hypervisor stealing more than 5% of the time
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
    """CPU activity outside this process during a measurement."""

    other_busy_cores: float | None
    steal_fraction: float | None
    load1: float | None

    @property
    def contended(self) -> bool:
        return bool((self.other_busy_cores or 0) > CONTENDED_CORES
                    or (self.steal_fraction or 0) > CONTENDED_STEAL)

    def to_dict(self) -> dict[str, Any]:
        return {"other_busy_cores": self.other_busy_cores, "steal_fraction": self.steal_fraction,
                "load1": self.load1, "contended": self.contended}


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
    if before.busy_s is None or after.busy_s is None or wall <= 0:
        return Contention(None, None, load1)
    others = (after.busy_s - before.busy_s) - (after.own_cpu_s - before.own_cpu_s)
    total = (after.total_s or 0) - (before.total_s or 0)
    steal = (after.steal_s or 0) - (before.steal_s or 0)
    # /proc/stat ticks are coarse (10 ms): clamp the rounding below zero
    return Contention(max(0.0, others / wall), (steal / total) if total > 0 else 0.0, load1)


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

