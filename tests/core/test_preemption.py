"""The preemption probe on this machine's real counters, with a real busy neighbour.

No timing margins: the tests check that the counters are real and that a neighbour
sharing our CPU shows up as flagged samples, not how long anything took.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hwopt.core.contention import Preemption
from pytest_hwopt.core.timing import HostTimer

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux")
                                or not hasattr(os, "sched_setaffinity"),
                                reason="reads Linux /proc and pins CPUs")


@linux_only
def test_probe_reads_the_real_counters():
    probe = Preemption()
    with probe.reading() as read:
        switches, wait = read()
        time.sleep(0.001)
        later = read()
    assert isinstance(switches, int) and isinstance(wait, int)
    assert switches >= 0 and wait >= 0
    assert later[0] >= switches and later[1] >= wait
    if Path("/proc/thread-self/schedstat").exists():
        # the same counters (every thread of the process), read again later
        tasks = Path("/proc/self/task").glob("*/schedstat")
        assert sum(int(t.read_text().split()[1]) for t in tasks) >= wait


def test_probe_sums_the_run_queue_wait_of_every_thread_of_the_process(tmp_path):
    """A pool's worker that waited for a neighbour's time slice holds the calling thread at
    the pool's barrier without any wait of its own: the workers' waits count too."""
    me = threading.get_native_id()
    task = tmp_path / "self" / "task"
    for tid, wait in ((me, 1_000), (me + 1, 20_000), (me + 2, 300)):
        (task / str(tid)).mkdir(parents=True)
        (task / str(tid) / "schedstat").write_text(f"5000 {wait} 3\n")
    probe = Preemption(proc=tmp_path)
    with probe.reading() as read:
        before = read()
        (task / str(me + 1) / "schedstat").write_text("9000 2020000 4\n")  # waited 2 ms
        after = read()
    assert before[1] == 21_300 and after[1] - before[1] == 2_000_000
    assert probe.disturbed(before, after, seconds=0.004)


def test_probe_without_proc_still_counts_switches(tmp_path):
    probe = Preemption(proc=tmp_path)  # no schedstat files here
    with probe.reading() as read:
        switches, wait = read()
    assert wait == 0 and switches >= 0


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def neighbour_on_our_cpu() -> Iterator[int]:
    """A busy process pinned to the CPU this thread is pinned to; yields the CPU."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    busy = subprocess.Popen(
        [sys.executable, "-c",
         f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nprint('up', flush=True)\n"
         "while True:\n    pass\n"],
        stdout=subprocess.PIPE)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == b"up"
        yield cpu
    finally:
        busy.kill()
        busy.communicate()  # reaps it and closes its pipe
        os.sched_setaffinity(0, before)


@linux_only
def test_a_neighbour_on_our_cpu_flags_samples(neighbour_on_our_cpu):
    """Sharing one CPU with a busy process: the scheduler must switch us out now and then
    (time slices are a few ms), so 2 ms samples over about half a second get flagged."""
    probe = Preemption()
    with probe.reading() as read:
        first = read()
    timed = HostTimer(probe).time_flagged(lambda: _spin(0.002), 1, 120)
    with probe.reading() as read:
        last = read()
    assert last[0] > first[0]  # involuntary switches really happened, and were counted
    assert any(timed.disturbed)
    assert len(timed.disturbed) == len(timed.seconds) == 120
