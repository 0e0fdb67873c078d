"""NvmlProbe against a fake pynvml: reasons, energy, facts, memory, missing library."""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_hwopt.hardware.nvml import (
    REASONS,
    NvmlProbe,
    nvml_ids,
    nvml_index,
    pci_bus_id,
    reason_names,
)


class FakeNvml:
    """Just enough of pynvml: the calls NvmlProbe makes, driven by attributes."""

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    class NVMLError_FunctionNotFound(NVMLError):
        pass

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, mask: int = 0, energy: list[int] | None = None,
                 init_error: Exception | None = None, event_reasons: bool = True) -> None:
        self.mask = mask
        self.energy = list(energy) if energy is not None else [1000, 3500]
        self.init_error = init_error
        self.inits = self.shutdowns = 0
        self.temperature = 40
        self.clock = 1980
        self.processes: list[Any] = []
        if not event_reasons:  # an old driver: only the throttle-reasons entry point works
            def missing(handle: Any) -> int:
                raise self.NVMLError_FunctionNotFound("Function Not Found")

            self.nvmlDeviceGetCurrentClocksEventReasons = missing  # type: ignore[method-assign]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index != 0:
            raise self.NVMLError("Invalid Argument")
        return "handle0"

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetClockInfo(self, handle: Any, kind: int) -> int:
        return self.clock if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, kind: int) -> int:
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self.temperature

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        return 700_000  # milliwatts

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        return SimpleNamespace(total=80 * 2**30, used=2 * 2**30, free=78 * 2**30)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self.mask

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        return self.mask

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        if not self.energy:
            raise self.NVMLError_NotSupported("Not Supported")
        return self.energy.pop(0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        return self.processes


def test_reason_bits_become_names_idle_and_app_clocks_ignored() -> None:
    assert reason_names(0x1 | 0x2) == []
    assert reason_names(0x1 | 0x4 | 0x40) == ["sw power cap", "hw thermal slowdown"]
    assert reason_names(0x8 | 0x20 | 0x80) == ["hw slowdown", "sw thermal slowdown",
                                                "hw power brake slowdown"]
    assert reason_names(0x1, ignore=0) == ["gpu idle"]
    assert reason_names(0x800 | 0x4) == ["sw power cap", "reason 0x800"]


def test_window_collects_reasons_energy_temperature_and_clocks() -> None:
    fake = FakeNvml(mask=0x1 | 0x4 | 0x40, energy=[10_000, 12_500])
    probe = NvmlProbe(0, nvml=fake, interval_s=0.001)
    assert probe.available() and probe.reason is None
    probe.start()
    fake.temperature, fake.clock = 71, 1755
    time.sleep(0.02)
    window = probe.stop()
    assert window["reasons"] == ["sw power cap", "hw thermal slowdown"]
    assert window["throttled"] is True
    assert window["energy_mj"] == 2500.0
    assert window["mean_power_w"] == pytest.approx(2.5 / window["seconds"])
    assert window["max_temperature_c"] == 71
    assert (window["min_sm_clock_mhz"], window["max_sm_clock_mhz"]) == (1755, 1980)
    assert window["samples"] >= 2 and window["sample_errors"] == 0
    probe.close()
    assert fake.shutdowns == 1


def test_idle_only_window_is_not_throttled() -> None:
    probe = NvmlProbe(0, nvml=FakeNvml(mask=0x1 | 0x2), interval_s=0.001)
    probe.start()
    window = probe.stop()
    assert window["reasons"] == [] and window["throttled"] is False


def test_energy_unsupported_gives_none() -> None:
    probe = NvmlProbe(0, nvml=FakeNvml(energy=[]))
    probe.start()
    window = probe.stop()
    assert window["energy_mj"] is None and window["mean_power_w"] is None


def test_energy_counter_going_backwards_gives_none() -> None:
    probe = NvmlProbe(0, nvml=FakeNvml(energy=[5000, 100]))
    probe.start()
    assert probe.stop()["energy_mj"] is None


def test_old_driver_falls_back_to_throttle_reasons() -> None:
    probe = NvmlProbe(0, nvml=FakeNvml(mask=0x4, event_reasons=False))
    probe.start()
    window = probe.stop()
    assert window["reasons_supported"] is True
    assert window["reasons"] == ["sw power cap"]


def test_facts_units_and_decoding() -> None:
    facts = NvmlProbe(0, nvml=FakeNvml(mask=0x1)).facts()
    assert facts["nvml"] is True
    assert facts["driver"] == "550.54.15"
    assert facts["gpu"] == "NVIDIA H100 80GB HBM3"
    assert facts["power_limit_w"] == 700.0
    assert (facts["sm_clock_mhz"], facts["mem_clock_mhz"]) == (1980, 2619)
    assert (facts["max_sm_clock_mhz"], facts["max_mem_clock_mhz"]) == (1980, 2619)
    assert facts["temperature_c"] == 40
    assert facts["memory_total_mb"] == 80 * 1024
    assert facts["clock_event_reasons"] == ["gpu idle"]


def test_library_not_found_is_unavailable_with_reason() -> None:
    fake = FakeNvml(init_error=FakeNvml.NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    probe = NvmlProbe(0, nvml=fake)
    assert probe.available() is False
    assert "NVMLError_LibraryNotFound" in str(probe.reason)
    assert probe.facts() == {"nvml": False, "reason": probe.reason}
    probe.start()
    window = probe.stop()
    assert window["nvml"] is False and "seconds" in window
    assert probe.process_memory_mb() is None
    probe.close()
    assert fake.shutdowns == 0


def test_unknown_device_index_is_unavailable() -> None:
    fake = FakeNvml()
    probe = NvmlProbe(3, nvml=fake)
    assert probe.available() is False
    assert "no device 3" in str(probe.reason)
    assert fake.shutdowns == 1  # the init it made is undone


def test_pynvml_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    probe = NvmlProbe(0)
    assert probe.available() is False
    assert "nvidia-ml-py" in str(probe.reason)


def test_real_pynvml_without_driver_is_unavailable() -> None:
    pynvml = pytest.importorskip("pynvml")
    probe = NvmlProbe(0)
    if probe.available():  # a machine with a GPU: nothing to check here
        probe.close()
        pytest.skip("NVML works on this machine")
    assert isinstance(pynvml.NVMLError, type)
    assert "NVML" in str(probe.reason)


def test_process_memory_by_pid() -> None:
    fake = FakeNvml()
    fake.processes = [SimpleNamespace(pid=10, usedGpuMemory=512 * 2**20),
                      SimpleNamespace(pid=11, usedGpuMemory=None)]
    probe = NvmlProbe(0, nvml=fake)
    assert probe.process_memory_mb(10) == 512.0
    assert probe.process_memory_mb(11) is None  # usage hidden
    assert probe.process_memory_mb(12) is None  # not listed (or another PID namespace)
    assert probe.compute_processes() == [{"pid": 10, "used_mb": 512.0},
                                         {"pid": 11, "used_mb": None}]


def test_start_stop_misuse_raises() -> None:
    probe = NvmlProbe(0, nvml=FakeNvml(), interval_s=0.001)
    with pytest.raises(RuntimeError, match="without start"):
        probe.stop()
    probe.start()
    with pytest.raises(RuntimeError, match="twice"):
        probe.start()
    probe.stop()
    probe.close()


def test_sampler_survives_a_failing_call() -> None:
    fake = FakeNvml()

    def broken(handle: Any, sensor: int) -> int:
        raise ValueError("driver hiccup")

    probe = NvmlProbe(0, nvml=fake, interval_s=0.001)
    probe.start()
    fake.nvmlDeviceGetTemperature = broken  # type: ignore[method-assign]
    time.sleep(0.01)
    window = probe.stop()
    assert window["sample_errors"] >= 1


@pytest.mark.parametrize(("visible", "index", "expected"), [
    (None, 0, 0), ("", 1, 1), ("2,3", 0, 2), ("2,3", 1, 3), ("2", 4, 4),
    ("GPU-abc, GPU-def", 1, "GPU-def"),
])
def test_nvml_index_follows_cuda_visible_devices(visible: str | None, index: int,
                                                 expected: int | str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nvml_index(index, visible) == expected


def test_uuid_index_uses_handle_by_uuid() -> None:
    fake = FakeNvml()
    fake.nvmlDeviceGetHandleByUUID = lambda uuid: f"handle:{uuid}"  # type: ignore[attr-defined]
    probe = NvmlProbe("GPU-abc", nvml=fake)
    assert probe.available()
    assert probe._handle == "handle:GPU-abc"


# -- matching CUDA's device to NVML's, several GPUs and MIG -------------------------------


class TwoGpuNvml(FakeNvml):
    """Two GPUs in NVML's (PCI) order: an A100 at bus 0x3B, an H100 at bus 0x86. CUDA's
    default order is fastest first, so CUDA's device 0 is NVML's device 1."""

    GPUS = [("NVIDIA A100-SXM4-40GB", "GPU-aaaa-1111", "00000000:3B:00.0"),
            ("NVIDIA H100 80GB HBM3", "GPU-hhhh-2222", "00000000:86:00.0")]

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if not 0 <= index < len(self.GPUS):
            raise self.NVMLError("Invalid Argument")
        return f"handle{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        for i, (_, known, _) in enumerate(self.GPUS):
            if uuid == known:
                return f"handle{i}"
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetHandleByPciBusId(self, bus: str) -> str:
        for i, (_, _, known) in enumerate(self.GPUS):
            if bus.upper() == known:
                return f"handle{i}"
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self.GPUS[int(str(handle)[-1])][0]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self.GPUS[int(str(handle)[-1])][1]


def test_cuda_device_is_matched_by_uuid_not_by_order() -> None:
    """torch's properties of cuda:0 carry the UUID without NVML's "GPU-" prefix."""
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", uuid="hhhh-2222")
    ids = nvml_ids(0, props, visible="")
    assert ids == ["GPU-hhhh-2222", "MIG-hhhh-2222", 0]
    probe = NvmlProbe(ids, nvml=TwoGpuNvml())
    facts = probe.facts()
    assert facts["gpu"] == "NVIDIA H100 80GB HBM3"  # by index it would be the A100
    assert (facts["matched_by"], facts["uuid"], facts["mig"]) == ("uuid", "GPU-hhhh-2222",
                                                                  False)


def test_cuda_device_is_matched_by_pci_bus_id_where_torch_has_it() -> None:
    props = SimpleNamespace(uuid="", pci_domain_id=0, pci_bus_id=0x86, pci_device_id=0)
    assert pci_bus_id(props) == "00000000:86:00.0"
    ids = nvml_ids(0, props, visible="")
    assert ids == ["00000000:86:00.0", 0]
    probe = NvmlProbe(ids, nvml=TwoGpuNvml())
    assert probe.facts()["gpu"] == "NVIDIA H100 80GB HBM3"
    assert probe.matched_by == "pci_bus_id"


def test_without_properties_the_visible_devices_entry_is_the_last_resort() -> None:
    assert nvml_ids(1, SimpleNamespace(), visible="2,3") == [3]
    assert nvml_ids(0, SimpleNamespace(), visible="GPU-x,GPU-y") == ["GPU-x"]
    probe = NvmlProbe(["GPU-none", 1], nvml=TwoGpuNvml())
    assert probe.available() and probe.matched_by == "index"
    missing = NvmlProbe(["GPU-none"], nvml=TwoGpuNvml())
    assert not missing.available() and "GPU-none" in str(missing.reason)


class MigNvml(TwoGpuNvml):
    """A MIG instance: device queries answer for the instance, clocks and energy only for
    its parent GPU (NVML returns NOT_SUPPORTED on the instance's handle)."""

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid == "MIG-mmmm":
            return "mig0"
        return super().nvmlDeviceGetHandleByUUID(uuid)

    def nvmlDeviceIsMigDeviceHandle(self, handle: Any) -> int:
        return int(str(handle).startswith("mig"))

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: Any) -> str:
        return "handle1"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        if str(handle).startswith("mig"):
            raise self.NVMLError_NotSupported("Not Supported")
        return super().nvmlDeviceGetTotalEnergyConsumption(handle)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        return [SimpleNamespace(pid=7, usedGpuMemory=2**20)] if handle == "mig0" else []


def test_mig_instance_reads_gpu_wide_figures_from_its_parent() -> None:
    probe = NvmlProbe(nvml_ids(0, SimpleNamespace(uuid="MIG-mmmm"), visible=""),
                      nvml=MigNvml(energy=[100, 350]))
    assert probe.available() and probe.mig and probe.matched_by == "uuid"
    assert probe.energy_mj() == 100  # the parent's counter
    assert probe.process_memory_mb(7) == 1.0  # the instance's processes
    assert probe.facts()["mig"] is True


def test_reason_bits_are_nvmls_constants() -> None:
    """Every named bit is one of nvml.h's clock-event reasons, and every reason is named."""
    pynvml = pytest.importorskip("pynvml")
    constants = {value for name, value in vars(pynvml).items()
                 if name.startswith("nvmlClocksEventReason") and isinstance(value, int)
                 and name not in ("nvmlClocksEventReasonNone", "nvmlClocksEventReasonAll")}
    assert {bit for bit, _ in REASONS} == constants
    assert reason_names(0x200 | 0x400) == ["reason 0x200", "reason 0x400"]


def test_one_nvml_session_serves_every_memory_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML counts nvmlInit calls: a reading per measurement must not init it again."""
    from pytest_hwopt.hardware import memory, nvml

    fake = FakeNvml()
    fake.processes = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=300 * 2**20)]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(nvml, "_SHARED", {})
    monkeypatch.setattr(nvml, "_cuda_properties", lambda index: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    readings = [memory.nvml_process_mb(0) for _ in range(5)]
    assert readings == [300.0] * 5
    assert (fake.inits, fake.shutdowns) == (1, 0)
