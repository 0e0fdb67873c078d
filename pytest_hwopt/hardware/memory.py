"""Peak memory added while a function runs: resident memory on the host; on CUDA torch's
allocator plus what a backend holds outside it (:func:`report_held`).

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
from pytest_hwopt.hardware.nvml import shared_probe

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


#: memory reports of the backends run inside :meth:`CudaPeak.measure` (None outside it)
_held: dict[str, float | None] | None = None


def report_held(source: str, mb: float | None) -> None:
    """A backend's runner states device memory it holds outside torch's allocator while it
    runs (a TensorRT execution context, an ONNX Runtime arena), in MB, under ``source``
    (one entry per backend instance; a repeat replaces it), or None when it cannot tell,
    which leaves the call's figure unmeasured rather than short. Read by
    :class:`CudaPeak`; a no-op (one global read) outside its measurement, so runners call
    it on every call."""
    if _held is not None:
        _held[source] = None if mb is None else float(mb)


class CudaPeak:
    """Peak device memory a call adds on ``cuda:<index>``: torch's allocator above the
    starting point, plus what the backend holds outside torch's allocator.

    Eager PyTorch allocates its activations from torch's allocator during the call;
    TensorRT keeps them in its execution context and ONNX Runtime in its arena, both
    outside torch's allocator (and allocated before the call). Those backends state
    that memory through :func:`report_held` (TensorRT from the engine's device memory
    size, ONNX Runtime from NVML's per-process figure across its first run), so the
    figures compare activations and workspace with activations and workspace; weights
    are in none of them. After :meth:`measure`, ``details`` holds the parts and this
    process's whole device memory as NVML sees it (MB; None where NVML cannot tell).
    """

    kind = ("torch max_memory_allocated - memory_allocated before, plus device memory the "
            "backend holds outside torch's allocator (TensorRT execution context, ONNX "
            "Runtime arena)")

    def __init__(self, index: int) -> None:
        self.index = index
        self.details: dict[str, float | None] = {}

    def measure(self, fn: Callable[[], object]) -> float | None:
        """MB the call of ``fn()`` needed above the starting point at its peak; None when
        a backend it ran could not tell what it holds outside torch's allocator."""
        global _held
        import torch

        torch.cuda.synchronize(self.index)
        torch.cuda.reset_peak_memory_stats(self.index)
        before = torch.cuda.memory_allocated(self.index)
        reserved_before = torch.cuda.memory_reserved(self.index)
        held: dict[str, float | None] = {}
        _held = held
        try:
            fn()
            torch.cuda.synchronize(self.index)
        finally:
            _held = None
        allocated: float = (torch.cuda.max_memory_allocated(self.index) - before) / MB
        unknown = any(v is None for v in held.values())
        outside = None if unknown else sum(v or 0.0 for v in held.values())
        self.details = {
            "allocated_peak_mb": allocated,
            "reserved_peak_mb": (torch.cuda.max_memory_reserved(self.index)
                                 - reserved_before) / MB,
            "outside_torch_mb": outside,
            "nvml_process_mb": nvml_process_mb(self.index),
        }
        return None if outside is None else allocated + outside


def nvml_process_mb(cuda_index: int) -> float | None:
    """This process's memory on ``cuda:<cuda_index>`` as NVML sees it (the CUDA context,
    torch's reserved memory and every other library's included), in MB; None where NVML
    is missing or does not list this process (another PID namespace). One NVML session
    per device serves every call (:func:`.nvml.shared_probe`)."""
    try:
        probe = shared_probe(cuda_index)
        return probe.process_memory_mb(os.getpid()) if probe.available() else None
    except Exception:  # telemetry must never break a measurement
        return None


def peak_probe(kind: str, index: int | None) -> MemoryPeak:
    """The probe for a device: :class:`CudaPeak` on ``"cuda"``, else :class:`ResidentPeak`."""
    if kind == "cuda":
        return CudaPeak(index or 0)
    return ResidentPeak()
