"""What the device did while a test measured: NVML telemetry around a run, energy per call.

On a CPU, or without NVML, the monitor is inactive and its calls are cheap no-ops.

Energy comes from NVML's energy counter (mJ), which the driver updates every 20-100 ms,
not continuously: a window read at arbitrary times is off by up to one update at each
end (about 20% of a 0.5 s window). :meth:`DeviceMonitor.energy` therefore starts and ends
its window on counter updates, makes it at least :data:`MIN_UPDATES` updates long, and
reports the idle power (read the same way with nothing running) apart from the energy
per call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TypedDict

from pytest_hwopt.hardware.nvml import NvmlFacts, NvmlProbe, NvmlWindow, shared_probe
from pytest_hwopt.hardware.roofline import annotate_roofline  # noqa: F401 - the old import path

ENERGY_WINDOW_S = 0.5  # the shortest window of calls
MIN_UPDATES = 10  # counter updates a window spans at least
IDLE_WINDOW_S = 0.25  # the shortest idle window
MAX_WINDOW_S = 10.0  # no window is made longer than this
POLL_S = 0.001  # how often the counter is read while waiting for an update
UPDATE_TIMEOUT_S = 1.0  # no update for this long: the counter is not usable


class Synchronizing(Protocol):
    """The device as the monitor needs it: ``kind``, ``index`` and ``synchronize()``."""

    kind: str
    index: int | None

    def synchronize(self) -> None: ...


class EnergyReading(TypedDict):
    """:meth:`DeviceMonitor.energy`'s answer. Energy in mJ, power in W, times in s.

    ``mj_per_call`` is everything the GPU drew per call; ``idle_power_w`` the power it
    draws with nothing running (read just before), and ``above_idle_mj_per_call`` the
    part of each call's energy above that idle draw."""

    mj_per_call: float
    above_idle_mj_per_call: float
    mean_power_w: float
    idle_power_w: float
    window_s: float
    calls: int
    counter_update_ms: float


class DeviceMonitor:
    """NVML on a CUDA device (when ``nvidia-ml-py`` and a driver are there), nothing elsewhere.

    ``reason`` says why the monitor is inactive (empty when it is active). ``probe``
    replaces the process's shared probe of the device (tests pass one on a fake NVML);
    ``clock`` and ``sleep`` are the time functions the energy window uses.
    """

    def __init__(self, device: Synchronizing, probe: NvmlProbe | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.device = device
        self._probe: NvmlProbe | None = None
        self._clock, self._sleep = clock, sleep
        self.reason = "telemetry needs an NVIDIA GPU" if device.kind != "cuda" else ""
        if device.kind == "cuda":
            probe = probe if probe is not None else shared_probe(device.index or 0)
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
        """Millijoules per call of ``fn`` (everything the GPU drew, idle power included;
        :meth:`energy` has the parts); None when inactive or without an energy counter."""
        reading = self.energy(fn, seconds)
        return None if reading is None else reading["mj_per_call"]

    def energy(self, fn: Callable[[], object], seconds: float = ENERGY_WINDOW_S
               ) -> EnergyReading | None:
        """Energy per call of ``fn`` over back-to-back calls, and the idle power apart.

        The idle window and the window of calls each start and end on an update of the
        counter, so neither is cut mid-update; the window of calls lasts at least
        ``seconds``, :data:`MIN_UPDATES` counter updates and 50 calls (but no more than
        :data:`MAX_WINDOW_S`), and the calls are counted in batches of about
        1 ms, synchronised, so a batch is the most the ends can be off by. None when
        inactive, without an energy counter, or when the counter does not move.
        """
        probe = self._probe
        if probe is None or probe.energy_mj() is None:
            return None
        self.device.synchronize()
        idle = self._idle()
        if idle is None:
            return None
        idle_w, update_s = idle
        start = self._clock()
        fn()
        self.device.synchronize()
        call_s = max(self._clock() - start, 1e-7)
        batch = max(1, int(0.001 / call_s))
        window = min(MAX_WINDOW_S, max(seconds, MIN_UPDATES * update_s, 50 * call_s))
        busy = self._busy(fn, batch, window)
        if busy is None:
            return None
        energy_mj, elapsed, calls = busy
        per_call = energy_mj / calls
        above = (energy_mj - idle_w * elapsed * 1000.0) / calls
        return {"mj_per_call": per_call, "above_idle_mj_per_call": above,
                "mean_power_w": energy_mj / 1000.0 / elapsed, "idle_power_w": idle_w,
                "window_s": elapsed, "calls": calls, "counter_update_ms": update_s * 1000.0}

    def _read(self) -> int | None:
        assert self._probe is not None
        return self._probe.energy_mj()

    def _next_update(self, after: int) -> tuple[float, int] | None:
        """``(time, value)`` of the first reading that differs from ``after``."""
        deadline = self._clock() + UPDATE_TIMEOUT_S
        while self._clock() < deadline:
            value = self._read()
            if value is None:
                return None
            if value != after:
                return self._clock(), value
            self._sleep(POLL_S)
        return None

    def _idle(self) -> tuple[float, float] | None:
        """``(idle power W, seconds between counter updates)``, nothing running."""
        first = self._read()
        if first is None:
            return None
        edge = self._next_update(first)
        if edge is None:
            return None
        t0, e0 = edge
        t1, e1, updates = t0, e0, 0
        while t1 - t0 < IDLE_WINDOW_S or updates < 3:
            step = self._next_update(e1)
            if step is None:
                return None
            t1, e1 = step
            updates += 1
        return (e1 - e0) / 1000.0 / (t1 - t0), (t1 - t0) / updates

    def _busy(self, fn: Callable[[], object], batch: int, window: float
              ) -> tuple[float, float, int] | None:
        """``(mJ, seconds, calls)`` from one counter update to the first one after
        ``window`` seconds of calls."""
        sync = self.device.synchronize

        def run_batch() -> int | None:
            for _ in range(batch):
                fn()
            sync()
            return self._read()

        last = self._read()
        deadline = self._clock() + UPDATE_TIMEOUT_S
        while True:  # calls until the counter moves: the window starts there
            value = run_batch()
            if value is None:
                return None
            if value != last:
                break
            if self._clock() > deadline:
                return None
        t0, e0, calls, previous = self._clock(), value, 0, value
        while True:
            value = run_batch()
            calls += batch
            if value is None:
                return None
            now = self._clock()
            moved, previous = value != previous, value
            if moved and now - t0 >= window and calls >= 3:
                if value < e0:
                    return None  # the counter went backwards (a driver reload)
                return float(value - e0), now - t0, calls
            if now - t0 > window + MAX_WINDOW_S:
                return None
