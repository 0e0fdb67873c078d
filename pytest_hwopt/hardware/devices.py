"""Device discovery and facts, on demand: never at import, torch only when CUDA is asked for.

A :class:`Device` also hands out what measures on it: its timer and its memory probe
(:mod:`.memory`).
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Union

from pytest_hwopt.core.devicekeys import CPU_FEATURES, cpu_feature_keys
from pytest_hwopt.core.timing import CudaEventTimer, HostTimer, Timer
from pytest_hwopt.hardware.memory import CudaPeak, MemoryPeak, peak_probe

if TYPE_CHECKING:
    from pytest_hwopt.hardware.peaks import MeasuredPeaks

__all__ = ["CPU_FLAGS", "CudaPeak", "Device", "DeviceError", "Fact", "Facts", "cpu_device",
           "cpu_facts", "cpuinfo_facts", "cuda_device", "nvidia_driver_present", "resolve",
           "torch_installed"]
# CudaPeak's home is .memory; it stays importable from here for older callers.

#: the CPU flags recorded with results (``cpu_flags``) and named by feature keys
#: (``cpu+avx512_vnni``); the list lives in core (:data:`.devicekeys.CPU_FEATURES`)
CPU_FLAGS = CPU_FEATURES


Fact = Union[str, int, float, list[str], None]
Facts = dict[str, Fact]  # name -> value, saved with results (e.g. "gpu", "logical_cores")


def _unmeasured() -> MeasuredPeaks:
    return {}  # a device's peaks stay empty until the peak probe runs


class DeviceError(RuntimeError):
    """The device asked for is not usable here; the message says what was found."""


@dataclass
class Device:
    """The device a test measures on.

    ``facts`` describe it (saved with results); ``peak`` holds its measured peaks
    (:func:`.peaks.measure_peaks`), empty until the roofline first needs them.
    """

    kind: str  # "cpu" or "cuda"
    index: int | None
    name: str
    facts: Facts = field(default_factory=dict)
    peak: MeasuredPeaks = field(default_factory=lambda: _unmeasured())

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index or 0}"

    def synchronize(self) -> None:
        """Wait for queued work on the device (a no-op on the CPU)."""
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.index)

    def budget_keys(self) -> list[str]:
        """Keys a per-device budget is looked up by, most specific first
        (:mod:`pytest_hwopt.core.devicekeys`): the name, then on a CPU whose flags were read
        one feature key per recognised flag (``cpu+avx2``, ``cpu-avx512_vnni``), then
        ``cpu``; on a GPU ``cuda:N``, then ``cuda``."""
        if self.kind == "cpu":
            flags = self.facts.get("cpu_flags")
            features = cpu_feature_keys(flags) if isinstance(flags, list) else []
            return [self.name, *features, "cpu"]
        return [self.name, self.torch_device, "cuda"]

    def timer(self, cold_cache: bool = False) -> Timer:
        """CUDA events on a GPU, on this device (made current while timing, so events and
        synchronisation are this GPU's, not device 0's); ``cold_cache``: the L2 flushed
        before each sample, and one call per sample so every timed call starts cold.
        Elsewhere the host clock. A cold cache cannot be made on a CPU: :class:`DeviceError`."""
        if self.kind == "cuda":
            import torch

            index = self.index or 0
            if not cold_cache:
                return CudaEventTimer(torch.cuda, device=index)
            from pytest_hwopt.hardware.cudagraph import l2_flusher

            timer = CudaEventTimer(torch.cuda, between=l2_flusher(index), device=index,
                                   one_call_per_sample=True)
            timer.name = "cuda events, L2 flushed before each sample (one call per sample)"
            return timer
        if cold_cache:
            raise DeviceError("a cold cache (--hwopt-cache=cold) flushes a GPU's L2; "
                              f"measuring on {self.torch_device}")
        return HostTimer()

    def memory(self) -> MemoryPeak:
        """The memory probe for this device: torch's allocator on CUDA, resident memory
        elsewhere (see :mod:`.memory`)."""
        return peak_probe(self.kind, self.index)


def torch_installed() -> bool:
    """Whether torch can be imported (without importing it)."""
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
    """``cuda:<index>`` with its facts; :class:`DeviceError` saying what was found when it is
    not usable (no torch, a CPU build, no driver, no such index)."""
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
    facts: Facts = {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_gb": round(props.total_memory / 2**30, 2),
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    return Device("cuda", index, props.name, facts)


@lru_cache(maxsize=1)
def cpu_facts() -> Facts:
    """CPU model, cores, flags that matter for inference (:data:`CPU_FLAGS`), memory in GB.

    Read from ``/proc`` where there is one; keys that cannot be read are left out.
    """
    facts: Facts = {"cpu": platform.processor() or platform.machine(),
                    "machine": platform.machine(), "logical_cores": os.cpu_count()}
    try:
        facts["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        facts.update(cpuinfo_facts(Path("/proc/cpuinfo").read_text()))
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


def cpuinfo_facts(text: str) -> Facts:
    """``cpu`` (the model name) and ``cpu_flags`` (the :data:`CPU_FLAGS` it has, in that
    order) from the text of Linux's ``/proc/cpuinfo``, first processor only (x86 ``flags``,
    Arm ``Features``); a key the text does not hold is left out."""
    facts: Facts = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "cpu" not in facts:
            facts["cpu"] = value.strip()
        elif key in ("flags", "Features"):
            present = set(value.split())
            facts["cpu_flags"] = [f for f in CPU_FLAGS if f in present]
            break
    return facts


def cpu_device() -> Device:
    """The host CPU, named by its model."""
    facts = cpu_facts()
    return Device("cpu", None, str(facts.get("cpu", "cpu")), dict(facts))
