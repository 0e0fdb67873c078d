"""Timers with a fake device: events recorded around each sample, one synchronisation per block."""

from __future__ import annotations

from fake_cuda import FakeCuda

from pytest_hwopt.core.timing import CudaEventTimer, HostTimer, SyncedHostTimer


def test_cuda_events_time_device_work_with_one_sync_per_block():
    cuda = FakeCuda(count=1)  # events, streams and synchronisation as CUDA has them

    def kernel() -> None:
        cuda.kernel(device=0, ms=2.5)  # queued device work of 2.5 ms, returns at once

    times = CudaEventTimer(cuda, device=0).time_samples(kernel, calls_per_sample=4, samples=3)
    assert times == [0.01, 0.01, 0.01]  # 4 calls x 2.5 ms, in seconds
    assert cuda.log.count(("synchronize", 0)) == 1
    assert sum(1 for entry in cuda.log if entry[0] == "record") == 6


def test_between_runs_outside_the_timed_region():
    cuda = FakeCuda(count=1)
    flushed = []

    def flush() -> None:
        cuda.kernel(device=0, ms=100.0)  # an L2 flush: expensive, must not be counted
        flushed.append(1)

    def kernel() -> None:
        cuda.kernel(device=0, ms=1.0)

    times = CudaEventTimer(cuda, between=flush, device=0).time_samples(kernel, 1, 5)
    assert times == [0.001] * 5
    assert len(flushed) == 5


def test_synced_host_timer_synchronises_before_reading_the_clock():
    calls = []
    timer = SyncedHostTimer(lambda: calls.append("sync"))
    times = timer.time_samples(lambda: calls.append("call"), calls_per_sample=2, samples=2)
    assert calls == ["sync", "call", "call", "sync", "call", "call", "sync"]
    assert len(times) == 2 and all(t >= 0 for t in times)


def test_host_timer_calls_exactly_as_asked():
    count = []
    times = HostTimer().time_samples(lambda: count.append(1), calls_per_sample=3, samples=4)
    assert len(count) == 12 and len(times) == 4
