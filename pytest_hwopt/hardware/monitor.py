"""What the device did while a test measured: NVML telemetry around a run, energy per call.

On a CPU, or without NVML, the monitor is inactive and its calls are cheap no-ops.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from pytest_hwopt.hardware.devices import Device
from pytest_hwopt.hardware.nvml import NvmlFacts, NvmlProbe, NvmlWindow, nvml_index
from pytest_hwopt.hardware.roofline import annotate_roofline  # noqa: F401 - the old import path

ENERGY_WINDOW_S = 0.5  # NVML's energy counter updates every 20-100 ms


class DeviceMonitor:
    """NVML on a CUDA device (when ``nvidia-ml-py`` and a driver are there), nothing elsewhere.

    ``reason`` says why the monitor is inactive (empty when it is active).
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self._probe: NvmlProbe | None = None
        self.reason = "telemetry needs an NVIDIA GPU" if device.kind != "cuda" else ""
        if device.kind == "cuda":
            probe = NvmlProbe(nvml_index(device.index or 0))
            if probe.available():
                self._probe = probe
            else:
                self.reason = probe.reason or ""

    @property
    def active(self) -> bool:
        return self._probe is not None

    def facts(self) -> NvmlFacts:
        """NVML's facts about the GPU; empty when inactive."""
        return self._probe.facts() if self._probe is not None else {}

    @contextlib.contextmanager
    def window(self) -> Iterator[NvmlWindow]:
        """Yields a dict filled, on exit, with what NVML saw (throttling, clocks, energy)."""
        seen: NvmlWindow = {}
        if self._probe is None:
            yield seen
            return
        self._probe.start()
        try:
            yield seen
        finally:
            seen.update(self._probe.stop())

    def energy_per_call(self, fn: Callable[[], object], seconds: float = ENERGY_WINDOW_S
                        ) -> float | None:
        """Millijoules per call of ``fn`` over a window of back-to-back calls (at least 3
        calls and ``seconds``); None when inactive or NVML has no energy counter."""
        if self._probe is None:
            return None
        calls = 0
        self.device.synchronize()
        self._probe.start()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or calls < 3:
            fn()
            calls += 1
        self.device.synchronize()
        energy = self._probe.stop().get("energy_mj")
        return None if energy is None else energy / calls
