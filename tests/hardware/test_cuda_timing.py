"""CUDA timing on the device the work runs on: events, streams, the cold cache, graph replays.

Driven by :mod:`fake_cuda`, which keeps what CUDA does with several GPUs: events record on
the current device's current stream, and ``synchronize()`` waits for the current device.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fake_cuda import FakeCuda

from pytest_hwopt.core.engine import Engine, EngineConfig, Variant
from pytest_hwopt.core.timing import CudaEventTimer, Timed


def test_events_time_the_gpu_the_work_runs_on() -> None:
    """cuda:1 measured from a process whose current device is 0: without making cuda:1
    current, the events would be device 0's and every sample near 0 ms."""
    cuda = FakeCuda(count=2)
    timer = CudaEventTimer(cuda, device=1)
    times = timer.time_samples(lambda: cuda.kernel(device=1, ms=2.5), calls_per_sample=2,
                               samples=3)
    assert times == pytest.approx([0.005] * 3)
    assert {entry[1] for entry in cuda.log if entry[0] == "record"} == {1}
    assert ("synchronize", 1) in cuda.log and ("synchronize", 0) not in cuda.log
    assert cuda.current == 0  # the caller's device is current again


def test_events_on_a_dedicated_stream_are_ordered_with_the_callers() -> None:
    cuda = FakeCuda(count=1)
    side = cuda.Stream()
    timer = CudaEventTimer(cuda, device=0, stream=side)
    timer.time_samples(lambda: cuda.kernel(device=0, ms=1.0), 1, 2)
    records = [entry for entry in cuda.log if entry[0] == "record"]
    assert {stream for _, _, stream in records} == {side.cuda_stream}
    waits = [entry for entry in cuda.log if entry[0] == "wait"]
    # the stream waits for the caller's queued work first; the caller waits for it last
    assert waits == [("wait", side.cuda_stream, 0), ("wait", 0, side.cuda_stream)]
    assert cuda.log.index(waits[0]) < cuda.log.index(records[0])
    assert cuda.log.index(waits[1]) > cuda.log.index(records[-1])
    assert cuda.current_stream().cuda_stream == 0


def test_device_timer_is_on_its_gpu_and_cold_means_one_call_per_sample(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from pytest_hwopt.hardware import cudagraph
    from pytest_hwopt.hardware.devices import Device

    flushed: list[int] = []
    monkeypatch.setattr(cudagraph, "l2_flusher",
                        lambda index, mb=256: lambda: flushed.append(index))
    warm = Device("cuda", 1, "GPU one").timer()
    cold = Device("cuda", 1, "GPU one").timer(cold_cache=True)
    assert isinstance(warm, CudaEventTimer) and isinstance(cold, CudaEventTimer)
    assert (warm.device, warm.one_call_per_sample) == (1, False)
    assert (cold.device, cold.one_call_per_sample) == (1, True)
    assert "one call per sample" in cold.name


class CountingTimer:
    """A timer whose samples take 0.01 ms per call, and that counts calls per sample."""

    name = "counting"

    def __init__(self, one_call_per_sample: bool) -> None:
        self.one_call_per_sample = one_call_per_sample
        self.per_sample: set[int] = set()

    def time_samples(self, fn: Callable[[], object], calls_per_sample: int,
                     samples: int) -> list[float]:
        self.per_sample.add(calls_per_sample)
        for _ in range(calls_per_sample * samples):
            fn()
        return [calls_per_sample * 1e-5] * samples

    def time_flagged(self, fn: Callable[[], object], calls_per_sample: int,
                     samples: int) -> Timed:
        seconds = self.time_samples(fn, calls_per_sample, samples)
        return Timed(seconds, [False] * samples)


@pytest.mark.parametrize(("cold", "batched"), [(False, True), (True, False)])
def test_a_cold_cache_times_one_call_per_flushed_sample(cold: bool, batched: bool) -> None:
    """Work of 0.01 ms is batched 10 calls to a sample on a warm cache; with the L2
    flushed before each sample, calls 2..10 would run warm, so each sample is one call."""
    timer = CountingTimer(one_call_per_sample=cold)
    engine = Engine(EngineConfig(warmup_ms=0.0, min_rounds=3, max_time_s=0.0, block_ms=0.1),
                    timer=timer, faults=lambda: 0)
    result = engine.run([Variant("tiny", lambda: None)])
    per_sample = result.measurements["tiny"].calls_per_sample
    assert (per_sample > 1) is batched
    assert timer.per_sample == ({1, per_sample} if batched else {1})


def test_graph_replays_return_distinct_outputs() -> None:
    """A CUDA graph writes its outputs into the same tensors on every replay: a kept output
    must not change under its holder at the next call."""
    torch = pytest.importorskip("torch")
    from pytest_hwopt.hardware.cudagraph import GraphReplay

    static = torch.zeros(3)
    values = iter([1.0, 2.0])

    class Graph:
        def replay(self) -> None:
            static.fill_(next(values))  # what replaying the captured kernels does

    replay = GraphReplay(Graph(), (static, {"y": static}), stream=None)  # type: ignore[arg-type]
    first = replay()
    second = replay()
    assert first[0] is not second[0] and first[0] is not static
    assert first[0].tolist() == [1.0] * 3 and first[1]["y"].tolist() == [1.0] * 3
    assert second[0].tolist() == [2.0] * 3
