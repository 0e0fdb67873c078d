"""Unit tests for pytest_hwopt.core.contention: CPU contention, steal time, page faults.

/proc is faked with files in tmp_path; nothing depends on this machine's load.
"""

from __future__ import annotations

import pytest

from pytest_hwopt.core import contention as noise
from pytest_hwopt.core.contention import (
    CONTENDED_CORES,
    CONTENDED_STEAL,
    Contention,
    CpuSnapshot,
    contention,
)


def snap(wall, busy, own, steal=0.0, total=100.0):
    return CpuSnapshot(wall=wall, busy_s=busy, steal_s=steal, total_s=total, own_cpu_s=own)


# --- contention ---------------------------------------------------------------------------


def test_other_busy_cores_is_busy_minus_own_over_wall_time():
    """4 busy core-seconds in 2 s, 1 of them this process's: 1.5 other cores."""
    c = contention(snap(10.0, 100.0, 5.0), snap(12.0, 104.0, 6.0))
    assert c.other_busy_cores == 1.5
    assert c.contended


def test_quiet_machine_is_not_contended():
    c = contention(snap(0.0, 50.0, 2.0, steal=0.0, total=100.0),
                   snap(4.0, 52.5, 4.0, steal=0.0, total=116.0))
    assert c.other_busy_cores == 0.125
    assert c.steal_fraction == 0.0
    assert not c.contended


def test_steal_fraction():
    """0.5 s stolen of 8 s total CPU time: 6.25% > 5%."""
    c = contention(snap(0.0, 10.0, 1.0, steal=1.0, total=100.0),
                   snap(2.0, 11.0, 2.0, steal=1.5, total=108.0))
    assert c.other_busy_cores == 0.0
    assert c.steal_fraction == 0.0625
    assert c.contended


def test_own_time_above_busy_delta_is_clamped_to_zero():
    """/proc/stat ticks are coarse: own CPU can exceed the system's busy delta."""
    c = contention(snap(0.0, 10.0, 1.0), snap(1.0, 10.5, 2.0))
    assert c.other_busy_cores == 0.0


def test_unknown_without_proc_stat_or_elapsed_time():
    unknown = CpuSnapshot(1.0, None, None, None, 0.0)
    for before, after in [(unknown, snap(2.0, 1.0, 0.0)), (snap(0.0, 1.0, 0.0), unknown),
                          (snap(5.0, 1.0, 0.0), snap(5.0, 9.0, 0.0))]:
        c = contention(before, after)
        assert (c.other_busy_cores, c.steal_fraction) == (None, None)
        assert not c.contended


def test_zero_total_gives_zero_steal():
    c = contention(snap(0.0, 1.0, 0.0, total=50.0), snap(1.0, 1.0, 0.0, total=50.0))
    assert c.steal_fraction == 0.0


@pytest.mark.parametrize("cores,steal,contended", [
    (None, None, False), (0.0, 0.0, False), (CONTENDED_CORES, CONTENDED_STEAL, False),
    (CONTENDED_CORES + 0.01, 0.0, True), (0.0, CONTENDED_STEAL + 0.001, True),
])
def test_contended_thresholds(cores, steal, contended):
    assert Contention(cores, steal, None).contended is contended


def test_contention_to_dict():
    assert Contention(1.0, 0.0, 2.5, 1.9).to_dict() == {
        "other_busy_cores": 1.0, "steal_fraction": 0.0, "load1": 2.5, "own_cores": 1.9,
        "contended": True}


def test_snapshot_reads_proc_stat(tmp_path):
    """user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  400 100 200 5000 300 0 50 20 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    s = noise.snapshot(stat)
    t = noise._TICKS
    assert s.total_s == pytest.approx((400 + 100 + 200 + 5000 + 300 + 0 + 50 + 20) / t)
    assert s.steal_s == pytest.approx(20 / t)
    assert s.busy_s == pytest.approx((400 + 100 + 200 + 0 + 50) / t)
    assert s.own_cpu_s >= 0.0


def test_snapshot_without_proc_stat(tmp_path):
    s = noise.snapshot(tmp_path / "missing")
    assert (s.busy_s, s.steal_s, s.total_s) == (None, None, None)


def test_minor_faults_is_a_count():
    assert isinstance(noise.minor_faults(), int)
