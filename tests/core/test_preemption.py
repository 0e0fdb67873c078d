"""The preemption probe on this machine's real counters, with a real busy neighbour.

No timing margins: the tests check that the counters are real and that a neighbour
sharing our CPU shows up as flagged samples, not how long anything took.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
        fields = Path("/proc/thread-self/schedstat").read_text().split()
        assert int(fields[1]) >= wait  # the same counter, read again later


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
