"""Energy per call from NVML's energy counter, which moves in steps (every 20-100 ms), not
continuously: driven by a fake GPU that draws 60 W idle and 300 W while it works, and a
counter that, like the driver's, updates every 50 ms."""

from __future__ import annotations

import bisect
import math
from typing import Any

import pytest

from pytest_hwopt.hardware.monitor import DeviceMonitor
from pytest_hwopt.hardware.nvml import NvmlProbe

IDLE_W, BUSY_W, UPDATE_S, CALL_S = 60.0, 300.0, 0.05, 0.0002


class SteppedGpu:
    """A fake clock, a GPU's power draw, and NVML's energy counter with its update steps."""

    class NVMLError(Exception):
        pass

    def __init__(self, start_s: float = 12.3456) -> None:
        self.now = start_s
        self.energy_mj = 1e6  # since the driver loaded; idle for the second before
        self.history = [(start_s - 1.0, self.energy_mj - IDLE_W * 1000.0),
                        (self.now, self.energy_mj)]
        self.inits = 0

    # time passing
    def advance(self, seconds: float, watts: float) -> None:
        self.now += seconds
        self.energy_mj += watts * seconds * 1000.0
        self.history.append((self.now, self.energy_mj))

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds, IDLE_W)

    def call(self) -> None:
        self.advance(CALL_S, BUSY_W)

    # what NVML answers: the energy at the last update
    def _energy_at(self, t: float) -> float:
        i = bisect.bisect_right([h[0] for h in self.history[-4000:]], t)
        history = self.history[-4000:]
        if i == 0:
            return history[0][1]
        if i == len(history):
            return history[-1][1]
        (t0, e0), (t1, e1) = history[i - 1], history[i]
        return e0 + (e1 - e0) * (t - t0) / (t1 - t0)

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return "gpu"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        last_update = math.floor(self.now / UPDATE_S) * UPDATE_S
        return int(self._energy_at(last_update))


class FakeDevice:
    kind = "cuda"
    index = 0

    def synchronize(self) -> None:
        pass


def monitor(gpu: SteppedGpu) -> DeviceMonitor:
    probe = NvmlProbe(0, nvml=gpu)
    return DeviceMonitor(FakeDevice(), probe=probe, clock=gpu.clock, sleep=gpu.sleep)


@pytest.mark.parametrize("start_s", [12.3456, 12.3999, 7.0001])
def test_energy_per_call_and_idle_power_from_a_stepped_counter(start_s: float) -> None:
    gpu = SteppedGpu(start_s)
    reading = monitor(gpu).energy(gpu.call, seconds=0.5)
    assert reading is not None
    per_call = BUSY_W * CALL_S * 1000.0  # 60 mJ
    assert reading["mj_per_call"] == pytest.approx(per_call, rel=0.02)
    assert reading["idle_power_w"] == pytest.approx(IDLE_W, rel=0.02)
    assert reading["above_idle_mj_per_call"] == pytest.approx(
        (BUSY_W - IDLE_W) * CALL_S * 1000.0, rel=0.03)
    assert reading["counter_update_ms"] == pytest.approx(UPDATE_S * 1000.0, rel=0.05)
    assert reading["window_s"] >= max(0.5, 10 * UPDATE_S)
    assert reading["mean_power_w"] == pytest.approx(BUSY_W, rel=0.02)
    assert gpu.inits == 1


def test_a_window_of_the_old_kind_is_off_by_up_to_a_counter_step() -> None:
    """Why the window is aligned: 0.5 s of calls read at arbitrary times misses up to one
    50 ms update at each end, here about 8%."""
    gpu = SteppedGpu(12.3999)
    read = gpu.nvmlDeviceGetTotalEnergyConsumption
    start, calls = read("gpu"), 2500  # 0.5 s of calls
    for _ in range(calls):
        gpu.call()
    naive = (read("gpu") - start) / calls
    assert abs(naive / (BUSY_W * CALL_S * 1000.0) - 1) > 0.05


def test_energy_per_call_keeps_its_old_meaning() -> None:
    gpu = SteppedGpu()
    assert monitor(gpu).energy_per_call(gpu.call) == pytest.approx(60.0, rel=0.02)


def test_no_counter_no_energy() -> None:
    class NoCounter(SteppedGpu):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
            raise self.NVMLError("Not Supported")

    gpu = NoCounter()
    assert monitor(gpu).energy(gpu.call) is None


def test_a_frozen_counter_gives_no_reading_rather_than_zero() -> None:
    class Frozen(SteppedGpu):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
            return 5000

    gpu = Frozen()
    assert monitor(gpu).energy(gpu.call) is None


def test_cpu_monitor_is_inactive() -> None:
    class Cpu:
        kind = "cpu"
        index = None

        def synchronize(self) -> None:
            pass

    cpu = DeviceMonitor(Cpu())
    assert not cpu.active and cpu.energy(lambda: None) is None
    assert cpu.reason == "telemetry needs an NVIDIA GPU"
