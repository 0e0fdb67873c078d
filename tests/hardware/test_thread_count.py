"""The session's thread count (idle cores from fake /proc/stat reads) and the pools it governs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_hwopt.hardware import threads
from pytest_hwopt.hardware.threads import (
    CpuTimes,
    IdleSampler,
    ThreadChoice,
    choose,
    cpu_quota,
    idle_cpus,
    in_force,
    limited,
    parse_proc_stat,
)

STAT = """cpu  300 0 100 1500 20 0 0 0 0 0
cpu0 100 0 50 800 10 0 0 0 0 0
cpu1 200 0 50 700 10 0 0 0 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
"""


def times(wall_s: float, busy: dict[int, int], total: dict[int, int],
          own_cpu_s: float = 0.0) -> CpuTimes:
    return CpuTimes(wall_s, own_cpu_s, total, busy)


def window(busy_ticks: dict[int, int], own_cpu_s: float = 0.0, ticks: int = 10,
           wall_s: float = 0.1) -> tuple[CpuTimes, CpuTimes]:
    """Two reads ``wall_s`` apart (100 Hz ticks: 10 per CPU in 0.1 s), with ``busy_ticks``
    per CPU spent not idle in between."""
    cpus = list(busy_ticks)
    before = times(5.0, dict.fromkeys(cpus, 1000), dict.fromkeys(cpus, 5000))
    after = times(5.0 + wall_s, {c: 1000 + b for c, b in busy_ticks.items()},
                  dict.fromkeys(cpus, 5000 + ticks), own_cpu_s)
    return before, after


# ---- reading /proc/stat ------------------------------------------------------------------

def test_parse_proc_stat_reads_per_cpu_lines_and_counts_iowait_as_idle() -> None:
    total, busy = parse_proc_stat(STAT)
    assert total == {0: 960, 1: 960}
    assert busy == {0: 150, 1: 250}  # idle + iowait are idle; the aggregate line is skipped


def test_parse_proc_stat_counts_steal_as_busy_and_skips_malformed_lines() -> None:
    text = "cpu3 10 0 10 70 0 0 0 10 5 0\ncpuX 1 2 3 4\ncpu4 1 2\n"
    total, busy = parse_proc_stat(text)
    assert total == {3: 100} and busy == {3: 30}  # guest (5) is inside user already


def test_read_cpu_times_is_none_without_proc_stat(tmp_path: Path) -> None:
    assert threads.read_cpu_times(tmp_path / "missing") is None
    (tmp_path / "stat").write_text("intr 1\n")
    assert threads.read_cpu_times(tmp_path / "stat") is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc/stat")
def test_read_cpu_times_reads_this_machine() -> None:
    now = threads.read_cpu_times()
    assert now is not None and now.total and set(now.busy) == set(now.total)


# ---- idle cores ----------------------------------------------------------------------------

def test_a_quiet_machine_has_every_core_idle() -> None:
    idle = idle_cpus(*window({0: 1, 1: 0}), cpus={0, 1})
    assert idle is not None and (idle.idle, idle.cpus) == (2, 2)
    assert idle.others_cores == pytest.approx(0.1)


def test_one_busy_neighbour_takes_one_core() -> None:
    idle = idle_cpus(*window({0: 10, 1: 0}), cpus={0, 1})
    assert idle is not None and idle.idle == 1 and idle.others_cores == pytest.approx(1.0)


def test_a_neighbour_spread_over_both_cores_still_takes_one() -> None:
    idle = idle_cpus(*window({0: 5, 1: 6}), cpus={0, 1})  # 1.1 cores, migrating
    assert idle is not None and idle.idle == 1


def test_a_little_background_work_takes_no_core() -> None:
    idle = idle_cpus(*window({0: 2, 1: 0}), cpus={0, 1})  # 0.2 cores: under the slack
    assert idle is not None and idle.idle == 2


def test_two_neighbours_leave_no_idle_core() -> None:
    idle = idle_cpus(*window({0: 10, 1: 10}), cpus={0, 1})
    assert idle is not None and idle.idle == 0


def test_this_process_own_cpu_time_is_not_a_neighbour() -> None:
    # the process itself kept one core busy over the window (collection, imports)
    idle = idle_cpus(*window({0: 10, 1: 0}, own_cpu_s=0.1), cpus={0, 1})
    assert idle is not None and idle.idle == 2
    # ... and with a neighbour on the other core
    idle = idle_cpus(*window({0: 10, 1: 10}, own_cpu_s=0.1), cpus={0, 1})
    assert idle is not None and idle.idle == 1


def test_only_the_cpus_this_process_may_use_count() -> None:
    # 4 CPUs, neighbours on 2 and 3; the process may run on 0 and 1 only
    idle = idle_cpus(*window({0: 0, 1: 0, 2: 10, 3: 10}), cpus={0, 1})
    assert idle is not None and (idle.idle, idle.cpus) == (2, 2)
    idle = idle_cpus(*window({0: 0, 1: 10, 2: 10, 3: 10}), cpus={1, 2, 7})  # 7: offline
    assert idle is not None and (idle.idle, idle.cpus) == (0, 2)


def test_tick_length_comes_from_the_reads_not_a_constant() -> None:
    # 250 Hz: 25 ticks per CPU in 0.1 s, one neighbour core
    idle = idle_cpus(*window({0: 25, 1: 0}, ticks=25), cpus={0, 1})
    assert idle is not None and idle.idle == 1 and idle.others_cores == pytest.approx(1.0)


def test_no_window_no_answer() -> None:
    before, after = window({0: 0, 1: 0}, ticks=0)
    assert idle_cpus(before, after, {0, 1}) is None
    assert idle_cpus(*window({0: 0}), cpus={5}) is None


# ---- the choice -----------------------------------------------------------------------------

def test_the_option_wins_as_given() -> None:
    before, after = window({0: 10, 1: 10})
    assert choose(4, before, after, {0, 1}) == ThreadChoice(4, "option")


def test_the_default_is_the_idle_cores_and_at_least_one() -> None:
    assert choose(None, *window({0: 10, 1: 0}), cpus={0, 1}) == ThreadChoice(
        1, "idle cores (1 of 2 idle at start)")
    assert choose(None, *window({0: 10, 1: 10}), cpus={0, 1}) == ThreadChoice(
        1, "idle cores (0 of 2 idle at start)")
    assert choose(None, *window({0: 0, 1: 0}), cpus={0, 1}).count == 2


def test_a_cpu_quota_caps_the_default() -> None:
    choice = choose(None, *window({c: 0 for c in range(8)}), cpus=set(range(8)), quota=2.5)
    assert choice == ThreadChoice(2, "idle cores (8 of 8 idle at start; CPU quota 2.5 cores)")
    assert choose(None, *window({0: 0, 1: 0}), cpus={0, 1}, quota=0.5).count == 1
    assert choose(None, *window({0: 0, 1: 0}), cpus={0, 1}, quota=4.0).source == (
        "idle cores (2 of 2 idle at start)")


def test_without_proc_stat_the_usable_cores() -> None:
    assert choose(None, None, None, {0, 1, 2}) == ThreadChoice(
        3, "usable cores (3; idle cores unknown: no /proc/stat)")


def test_cpu_quota_reads_cgroup_v2_along_the_path(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "ci" / "job").mkdir(parents=True)
    own = tmp_path / "self_cgroup"
    own.write_text("0::/ci/job\n")
    assert cpu_quota(root, own) is None  # no cpu.max anywhere
    (root / "ci" / "job" / "cpu.max").write_text("max 100000\n")
    (root / "ci" / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(root, own) == 1.5
    (root / "ci" / "job" / "cpu.max").write_text("50000 100000\n")
    assert cpu_quota(root, own) == 0.5  # the smallest along the path
    own.write_text("12:cpu,cpuacct:/docker/abc\n")  # cgroup v1
    assert cpu_quota(root, own) is None
    assert cpu_quota(root, tmp_path / "missing") is None


class FakeProc:
    """/proc/stat reads on a fake clock: a neighbour keeps CPU 1 busy."""

    def __init__(self) -> None:
        self.now = 100.0
        self.reads = 0
        self.slept: list[float] = []

    def read(self) -> CpuTimes:
        self.reads += 1
        ticks = int(self.now * 100)
        return times(self.now, {0: 0, 1: ticks}, {0: ticks, 1: ticks})

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def sampler(proc: FakeProc, option: int | None = None) -> IdleSampler:
    return IdleSampler(option, read=proc.read, sleep=proc.sleep, clock=proc.clock,
                       cpus=lambda: {0, 1}, quota=lambda: None)


def test_sampler_uses_the_window_since_start_without_waiting() -> None:
    proc = FakeProc()
    s = sampler(proc)
    s.start()
    proc.now += 0.4  # collection took 0.4 s
    assert s.choice() == ThreadChoice(1, "idle cores (1 of 2 idle at start)")
    assert proc.slept == [0.0] and proc.reads == 2
    assert s.choice() is s.choice() and proc.reads == 2  # chosen once


def test_sampler_waits_out_a_short_window() -> None:
    proc = FakeProc()
    s = sampler(proc)
    s.start()
    proc.now += 0.03
    assert s.choice().count == 1
    assert proc.slept == [pytest.approx(threads.MIN_WINDOW_S - 0.03)]


def test_sampler_replaces_an_old_window_and_opens_one_when_never_started() -> None:
    proc = FakeProc()
    s = sampler(proc)
    s.start()
    proc.now += threads.MAX_WINDOW_S + 5
    assert s.choice().count == 1
    assert proc.reads == 3 and proc.slept == [pytest.approx(threads.MIN_WINDOW_S)]
    fresh = FakeProc()
    assert sampler(fresh).choice().count == 1 and fresh.reads == 2


def test_sampler_with_an_option_reads_nothing() -> None:
    proc = FakeProc()
    s = sampler(proc, option=3)
    s.start()
    assert s.choice() == ThreadChoice(3, "option") and proc.reads == 0 and not proc.slept


# ---- the pools ------------------------------------------------------------------------------

def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_limited_limits_numpy_blas_and_restores_it() -> None:
    pytest.importorskip("numpy")
    before = _blas_threads()
    if not before:
        pytest.skip("numpy has no BLAS library threadpoolctl can see")
    with limited(1) as pools:
        assert _blas_threads() == [1] * len(before)
        assert any(v == 1 for k, v in pools.items() if "blas" in k)
    assert _blas_threads() == before


def test_limited_sets_torch_intra_op_and_restores_it() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with limited(1) as pools:
        assert torch.get_num_threads() == 1
        assert pools["torch"] == 1 and pools["torch_interop"] >= 1
    assert torch.get_num_threads() == before


class FakeTorch:
    """Intra-op settable; inter-op already fixed at 2, as after parallel work started."""

    def __init__(self) -> None:
        self.intra = 4

    def get_num_threads(self) -> int:
        return self.intra

    def set_num_threads(self, n: int) -> None:
        self.intra = n

    def get_num_interop_threads(self) -> int:
        return 2

    def set_num_interop_threads(self, n: int) -> None:
        raise RuntimeError("Error: cannot set number of interop threads after parallel work "
                           "has started or set_num_interop_threads called")


def test_an_interop_pool_that_cannot_change_is_recorded_as_it_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTorch()
    monkeypatch.setitem(sys.modules, "torch", fake)
    with limited(1) as pools:
        assert pools["torch"] == 1 and pools["torch_interop"] == 2
    assert fake.intra == 4


def test_limited_rejects_fewer_than_one_thread() -> None:
    with pytest.raises(ValueError, match=">= 1"), limited(0):
        pass


class FakeController:
    def __init__(self, info: list[dict[str, Any]]) -> None:
        self._info = info

    def info(self) -> list[dict[str, Any]]:
        return self._info


def test_in_force_names_pools_by_prefix_taking_the_largest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    controller = FakeController([
        {"prefix": "libopenblas", "internal_api": "openblas", "num_threads": 1},
        {"prefix": "libopenblas", "internal_api": "openblas", "num_threads": 3},
        {"prefix": "libgomp", "internal_api": "openmp", "num_threads": 2}])
    assert in_force(controller) == {"libopenblas": 3, "libgomp": 2}


def test_importing_the_module_loads_neither_numpy_nor_threadpoolctl() -> None:
    code = ("import sys, pytest_hwopt.hardware.threads as t; "
            "print([m for m in ('numpy', 'torch', 'threadpoolctl') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
