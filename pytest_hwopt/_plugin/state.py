"""What the plugin keeps for one pytest run, and the stash keys it is kept under."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, cast

import pytest

from pytest_hwopt.core.settings import Settings

if TYPE_CHECKING:  # the rest loads when a test uses the plugin, not at pytest start-up
    from pytest_hwopt.backends.base import Backend
    from pytest_hwopt.core.bench import Bench
    from pytest_hwopt.core.specs import Spec
    from pytest_hwopt.hardware.devices import Device
    from pytest_hwopt.hardware.monitor import DeviceMonitor
    from pytest_hwopt.hardware.nvml import NvmlWindow
    from pytest_hwopt.hardware.peaks import MeasuredPeaks
    from pytest_hwopt.results.schema import Record

RECORD: Final = "hwopt"  # key of the user property that carries a test's results
PERF_TEST: Final = "hwopt_test"  # marks the reports of tests that use the plugin
HWOPT_FIXTURES: Final = frozenset({"hwopt_bench", "hwopt_backend", "hwopt_device"})


def xdist_worker(config: pytest.Config) -> str | None:
    """The pytest-xdist worker id (``gw0``, ...) when ``config`` is a worker's, else None."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else None


class State:
    """The session's settings, device, backends, monitor and collected test records.

    Registered as a plugin (``"hwopt-state"``) so that it receives every test report,
    xdist workers' included, in the controller.
    """

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.records: list[Record] = []
        self.perf_tests: set[str] = set()  # node ids of tests that use the plugin
        self.skipped_perf_tests: set[str] = set()
        self.all_skipped_message = ""
        self._device: Device | None = None
        self._backends: dict[str, Backend] | None = None
        self._monitor: DeviceMonitor | None = None

    @property
    def resolved_device(self) -> Device | None:
        """The device if it was resolved in this process (the xdist controller may never)."""
        return self._device

    def device(self) -> Device:
        """The measured device, resolved once (``auto`` resolves on first use)."""
        if self._device is None:
            from pytest_hwopt.hardware import devices

            self._device = devices.resolve(self._device_spec())
        return self._device

    def _device_spec(self) -> str:
        """With pytest-xdist and ``--hwopt-device=cuda``, worker N takes GPU N mod count."""
        spec = self.settings.device
        worker = xdist_worker(self.config)
        if spec != "cuda" or worker is None or not worker.startswith("gw"):
            return spec
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"cuda:{int(worker[2:]) % count}" if count > 1 else spec

    def backends(self) -> dict[str, Backend]:
        """name -> Backend from every ``pytest_hwopt_backends`` implementation."""
        if self._backends is None:
            from pytest_hwopt.backends import base

            self._backends = base.collect(
                self.config.hook.pytest_hwopt_backends(config=self.config))
        return self._backends

    def monitor(self) -> DeviceMonitor:
        """NVML telemetry for the device (inactive on a CPU or without NVML)."""
        if self._monitor is None:
            from pytest_hwopt.hardware.monitor import DeviceMonitor

            self._monitor = DeviceMonitor(self.device())
        return self._monitor

    def peaks(self) -> MeasuredPeaks:
        """Copy bandwidth and GEMM TFLOP/s of the device, measured once per machine and cached."""
        device = self.device()
        if not device.peak:
            from pytest_hwopt.hardware.peaks import measure_peaks, published_peak

            cache = self.config.cache.mkdir("hwopt-peaks") if getattr(
                self.config, "cache", None) is not None else None
            device.peak = measure_peaks(device, cache_dir=cache)
            published = published_peak(device.name)
            if published:
                device.peak["published"] = published
        return device.peak

    @contextlib.contextmanager
    def measuring(self) -> Iterator[NvmlWindow]:
        """Around a run: under pytest-xdist one worker at a time per device; NVML watching."""
        with contextlib.ExitStack() as stack:
            if xdist_worker(self.config) is not None:
                from pytest_hwopt.hardware.devlock import device_lock

                stack.enter_context(device_lock(self.device().torch_device))
            seen = stack.enter_context(self.monitor().window())
            yield seen

    def check_device_and_backends(self) -> None:
        """An explicit device that is not usable, or an unknown backend, ends the run at once
        (:class:`pytest.UsageError`)."""
        settings = self.settings
        if settings.device != "auto":
            from pytest_hwopt.hardware.devices import DeviceError

            try:
                self.device()
            except DeviceError as exc:
                raise pytest.UsageError(f"--hwopt-device={settings.device}: {exc}") from None
        if settings.backends:
            known = self.backends()
            unknown = [b for b in settings.backends if b not in known]
            if unknown:
                raise pytest.UsageError(
                    f"--hwopt-backends: unknown backend(s) {', '.join(unknown)}; "
                    f"known: {', '.join(known)}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # runs in the controller for xdist workers' reports too, so results merge here
        for key, value in report.user_properties:
            if key == RECORD and isinstance(value, dict):
                self.records.append(cast("Record", value))
            elif key == PERF_TEST:
                self.perf_tests.add(report.nodeid)
                if report.skipped:
                    self.skipped_perf_tests.add(report.nodeid)


state_key: Final[pytest.StashKey[State]] = pytest.StashKey()
#: an item's budgets, parsed at set-up
specs_key: Final[pytest.StashKey[list[Spec]]] = pytest.StashKey()
#: the item's ``hwopt_bench``, when it requested one
bench_key: Final[pytest.StashKey[Bench]] = pytest.StashKey()
#: the item's results record, made after its body ran
record_key: Final[pytest.StashKey[Record]] = pytest.StashKey()


def state_of(config: pytest.Config) -> State:
    """The session's :class:`State` (set in ``pytest_configure``)."""
    return config.stash[state_key]


def uses_plugin(item: pytest.Item, benchmark: bool = False) -> bool:
    """A performance test: it requests a hwopt fixture (or, with ``benchmark``, pytest-benchmark's,
    which a budgets file may give budgets to) or carries a hwopt marker."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if HWOPT_FIXTURES & fixtures or (benchmark and "benchmark" in fixtures):
        return True
    return any(m.name.startswith("hwopt_") for m in item.iter_markers())
