"""Peak memory added while a function runs: resident memory on the host, torch's allocator on CUDA.

Both probes answer the same question the same way (:class:`MemoryPeak`): call
``fn`` once and return how many MB above the starting point it needed at its
peak, or None where this machine cannot tell.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from pytest_hwopt.core.engine import MemoryProbe
from pytest_hwopt.hardware.nvml import NvmlProbe, nvml_index

MB = 2**20


class MemoryPeak(MemoryProbe, Protocol):
    """The engine's :class:`~pytest_hwopt.core.engine.MemoryProbe` (``kind``, ``measure``),
    plus the extra figures the engine saves as ``extra["memory_details"]``."""

    @property
    def details(self) -> Mapping[str, float | None]:
        """Extra figures of the last ``measure`` (MB), empty where there are none."""
        ...


class ResidentPeak:
    """Peak resident memory added while a function runs (Linux: VmHWM reset via clear_refs).

    ``proc`` is the ``/proc/<pid>`` folder to read (tests pass a fake one).
    """

    kind = "resident memory (VmHWM - VmRSS before)"

    def __init__(self, proc: Path = Path("/proc/self")) -> None:
        self._proc = proc
        self.details: dict[str, float | None] = {}  # no extra figures on the host

    def available(self) -> bool:
        """Whether ``clear_refs`` and ``status`` exist (Linux only)."""
        return (self._proc / "clear_refs").exists() and (self._proc / "status").exists()

    def measure(self, fn: Callable[[], object]) -> float | None:
        """MB of resident memory above the starting point at the peak of ``fn()``.

        None when the files are missing or unwritable, or ``status`` lacks a field.
        """
        if not self.available():
            return None
        try:
            (self._proc / "clear_refs").write_text("5")
        except OSError:
            return None
        before = self._read_kb("VmRSS")
        fn()
        peak = self._read_kb("VmHWM")
        if before is None or peak is None:
            return None
        return max(0.0, (peak - before) / 1024.0)

    def _read_kb(self, key: str) -> float | None:
        for line in (self._proc / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
        return None


class CudaPeak:
    """Peak device memory allocated by torch above the starting point while ``fn`` runs.

    ``index`` is the CUDA ordinal. After :meth:`measure`, ``details`` holds the
    allocated and reserved peaks and this process's memory as NVML sees it (MB;
    None where NVML cannot tell).
    """

    kind = "torch max_memory_allocated - memory_allocated before"

    def __init__(self, index: int) -> None:
        self.index = index
        self.details: dict[str, float | None] = {}

    def measure(self, fn: Callable[[], object]) -> float:
        """MB torch allocated above the starting point at the peak of ``fn()``."""
        import torch

        torch.cuda.synchronize(self.index)
        torch.cuda.reset_peak_memory_stats(self.index)
        before = torch.cuda.memory_allocated(self.index)
        reserved_before = torch.cuda.memory_reserved(self.index)
        fn()
        torch.cuda.synchronize(self.index)
        peak: float = (torch.cuda.max_memory_allocated(self.index) - before) / MB
        self.details = {
            "allocated_peak_mb": peak,
            "reserved_peak_mb": (torch.cuda.max_memory_reserved(self.index)
                                 - reserved_before) / MB,
            "nvml_process_mb": nvml_process_mb(self.index),
        }
        return peak


def nvml_process_mb(cuda_index: int) -> float | None:
    """This process's memory on ``cuda:<cuda_index>`` as NVML sees it (the CUDA context
    included), in MB; None where NVML is missing or does not list this process."""
    try:
        probe = NvmlProbe(nvml_index(cuda_index))
        return probe.process_memory_mb(os.getpid()) if probe.available() else None
    except Exception:  # telemetry must never break a measurement
        return None


def peak_probe(kind: str, index: int | None) -> MemoryPeak:
    """The probe for a device: :class:`CudaPeak` on ``"cuda"``, else :class:`ResidentPeak`."""
    if kind == "cuda":
        return CudaPeak(index or 0)
    return ResidentPeak()
