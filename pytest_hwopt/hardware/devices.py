"""Device discovery and facts, on demand: never at import, torch only when CUDA is asked for."""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pytest_hwopt.core.contention import ResidentPeak
from pytest_hwopt.core.timing import CudaEventTimer, HostTimer, Timer

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile",
             "amx_bf16", "amx_int8", "fma")


class DeviceError(RuntimeError):
    """The device asked for is not usable here; the message says what was found."""


@dataclass
class Device:
    """The device a test measures on."""

    kind: str  # "cpu" or "cuda"
    index: int | None
    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    peak: dict[str, Any] = field(default_factory=dict)

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index or 0}"

    def synchronize(self) -> None:
        """Wait for queued work on the device (a no-op on the CPU)."""
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.index)

    def budget_keys(self) -> list[str]:
        """Keys a per-device budget is looked up by, most specific first."""
        if self.kind == "cpu":
            return [self.name, "cpu"]
        return [self.name, self.torch_device, "cuda"]

    def timer(self, cold_cache: bool = False) -> Timer:
        """CUDA events on a GPU (``cold_cache``: L2 flushed before each sample), else the host
        clock. A cold cache cannot be made on a CPU: :class:`DeviceError`."""
        if self.kind == "cuda":
            import torch

            if not cold_cache:
                return CudaEventTimer(torch.cuda)
            from pytest_hwopt.hardware.cudagraph import l2_flusher

            timer = CudaEventTimer(torch.cuda, between=l2_flusher(self.index or 0))
            timer.name = "cuda events, L2 flushed before each sample"
            return timer
        if cold_cache:
            raise DeviceError("a cold cache (--hwopt-cache=cold) flushes a GPU's L2; "
                              f"measuring on {self.torch_device}")
        return HostTimer()

    def memory(self) -> Any:
        if self.kind == "cuda":
            return CudaPeak(self.index or 0)
        return ResidentPeak()


class CudaPeak:
    """Peak device memory allocated by torch above the starting point while ``fn`` runs."""

    kind = "torch max_memory_allocated - memory_allocated before"

    def __init__(self, index: int) -> None:
        self.index = index
        self.details: dict[str, float | None] = {}  # reserved and NVML figures of the last call

    def measure(self, fn: Any) -> float:
        import torch

        torch.cuda.synchronize(self.index)
        torch.cuda.reset_peak_memory_stats(self.index)
        before = torch.cuda.memory_allocated(self.index)
        reserved_before = torch.cuda.memory_reserved(self.index)
        fn()
        torch.cuda.synchronize(self.index)
        peak = (torch.cuda.max_memory_allocated(self.index) - before) / 2**20
        self.details = {
            "allocated_peak_mb": peak,
            "reserved_peak_mb": (torch.cuda.max_memory_reserved(self.index)
                                 - reserved_before) / 2**20,
            "nvml_process_mb": _nvml_process_mb(self.index),
        }
        return peak


def _nvml_process_mb(index: int) -> float | None:
    """This process's device memory as NVML sees it (the CUDA context included)."""
    try:
        from pytest_hwopt.hardware.nvml import NvmlProbe, nvml_index

        probe = NvmlProbe(nvml_index(index))
        return probe.process_memory_mb(os.getpid()) if probe.available() else None
    except Exception:  # noqa: BLE001 - telemetry must never break a measurement
        return None


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def nvidia_driver_present() -> bool:
    """Cheap check without importing anything: device nodes of the NVIDIA driver."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def resolve(spec: str) -> Device:
    """The device for ``--hwopt-device``; an explicit device that is not usable raises."""
    if spec == "cpu":
        return cpu_device()
    if spec == "auto":
        if torch_installed() and nvidia_driver_present():
            try:
                return cuda_device(0)
            except DeviceError:
                pass
        return cpu_device()
    index = int(spec.split(":", 1)[1]) if ":" in spec else 0
    return cuda_device(index)


def cuda_device(index: int) -> Device:
    if not torch_installed():
        raise DeviceError(f"cuda:{index} needs PyTorch, which is not installed; found: cpu")
    import torch

    if not torch.cuda.is_available():
        why = ("this PyTorch is a CPU build" if torch.version.cuda is None
               else "no NVIDIA GPU or driver was found")
        raise DeviceError(f"no usable CUDA device ({why}, torch {torch.__version__}); found: cpu")
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"cuda:{index} does not exist; found {count} GPU(s): "
                          + ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}"
                                      for i in range(count)))
    props = torch.cuda.get_device_properties(index)
    facts = {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_gb": round(props.total_memory / 2**30, 2),
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    return Device("cuda", index, props.name, facts)


@lru_cache(maxsize=1)
def cpu_facts() -> dict[str, Any]:
    """CPU model, cores, flags that matter for inference, memory."""
    facts: dict[str, Any] = {"cpu": platform.processor() or platform.machine(),
                             "machine": platform.machine(), "logical_cores": os.cpu_count()}
    try:
        facts["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                facts["cpu"] = value.strip()
            elif key in ("flags", "Features"):
                present = set(value.split())
                facts["cpu_flags"] = [f for f in CPU_FLAGS if f in present]
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return facts


def cpu_device() -> Device:
    facts = cpu_facts()
    return Device("cpu", None, str(facts.get("cpu", "cpu")), dict(facts))
