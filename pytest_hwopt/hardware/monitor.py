"""What the device did while a test measured: NVML telemetry, energy per call, the roofline.

The plugin calls these after (or around) a run; on a CPU they are cheap no-ops
except the roofline, which uses peaks measured once per machine and cached.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Iterator, Mapping

from pytest_hwopt.hardware.devices import Device
from pytest_hwopt.core.measurement import Measurement

ENERGY_WINDOW_S = 0.5  # NVML's energy counter updates every 20-100 ms


class DeviceMonitor:
    """NVML on a CUDA device (when ``nvidia-ml-py`` and a driver are there), nothing elsewhere."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._probe: Any = None
        self.reason = "telemetry needs an NVIDIA GPU" if device.kind != "cuda" else ""
        if device.kind == "cuda":
            from pytest_hwopt.hardware.nvml import NvmlProbe, nvml_index

            probe = NvmlProbe(nvml_index(device.index or 0))
            if probe.available():
                self._probe = probe
            else:
                self.reason = probe.reason

    @property
    def active(self) -> bool:
        return self._probe is not None

    def facts(self) -> dict[str, Any]:
        return self._probe.facts() if self._probe is not None else {}

    @contextlib.contextmanager
    def window(self) -> Iterator[dict[str, Any]]:
        """Yields a dict filled, on exit, with what NVML saw (throttling, clocks, energy)."""
        seen: dict[str, Any] = {}
        if self._probe is None:
            yield seen
            return
        self._probe.start()
        try:
            yield seen
        finally:
            seen.update(self._probe.stop())

    def energy_per_call(self, fn: Callable[[], Any], seconds: float = ENERGY_WINDOW_S
                        ) -> float | None:
        """Millijoules per call of ``fn`` over a window of back-to-back calls."""
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


def annotate_roofline(measurements: Mapping[str, Measurement], peak: Mapping[str, Any]) -> None:
    """Achieved GB/s, TFLOP/s, intensity and roofline fraction for variants that declared work."""
    from pytest_hwopt.hardware.peaks import achieved, roofline_fraction

    for m in measurements.values():
        bytes_moved = m.extra.get("bytes") or 0.0
        flops = m.extra.get("flops") or 0.0
        if not (bytes_moved or flops):
            continue
        seconds = m.median_ms / 1000.0
        got = achieved(bytes_moved, flops, seconds)
        m.extra.update({f"achieved_{k}": (v if math.isfinite(v) else None)
                        for k, v in got.items()})
        dtype = m.extra.get("dtype", "fp32")
        peak_tflops = (peak.get("tflops") or {}).get(dtype)
        peak_gbs = peak.get("gbs")
        if peak_gbs and (peak_tflops or not flops):
            m.extra["roofline_fraction"] = roofline_fraction(
                bytes_moved, flops, seconds, peak_gbs, peak_tflops or float("inf"))
            m.extra["peak_gbs"] = peak_gbs
            m.extra["peak_tflops"] = peak_tflops
