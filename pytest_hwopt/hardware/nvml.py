"""NVML telemetry around a measurement: clocks, temperature, clock-event reasons, energy.

``pynvml`` (package ``nvidia-ml-py``) is imported only when a probe is first
used, and every NVML call goes through the module object a probe holds, so
tests pass a fake. A machine without the package, the library or a driver gets
``available() == False`` and a ``reason`` saying which was missing.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

# Clock-event ("throttle") reason bits, as in nvml.h (nvmlClocksEventReason*; the older
# nvmlClocksThrottleReason* names have the same values). nvml.h defines no bit above 0x100;
# any other bit set is reported by its value ("reason 0x200").
REASONS: tuple[tuple[int, str], ...] = (
    (0x0000000000000001, "gpu idle"),
    (0x0000000000000002, "applications clocks setting"),
    (0x0000000000000004, "sw power cap"),
    (0x0000000000000008, "hw slowdown"),
    (0x0000000000000010, "sync boost"),
    (0x0000000000000020, "sw thermal slowdown"),
    (0x0000000000000040, "hw thermal slowdown"),
    (0x0000000000000080, "hw power brake slowdown"),
    (0x0000000000000100, "display clock setting"),
)
# Not throttling: the GPU waiting for work, or clocks pinned on purpose.
IGNORED_REASONS = 0x1 | 0x2


def reason_names(mask: int, ignore: int = IGNORED_REASONS) -> list[str]:
    """Readable names of the reason bits set in ``mask``, ``ignore`` bits left out."""
    mask &= ~ignore
    names = [name for bit, name in REASONS if mask & bit]
    known = 0
    for bit, _ in REASONS:
        known |= bit
    unknown = mask & ~known
    bit = 1
    while unknown:
        if unknown & bit:
            names.append(f"reason 0x{bit:x}")
            unknown &= ~bit
        bit <<= 1
    return names


def nvml_index(cuda_index: int, visible: str | None = None) -> int | str:
    """The ``CUDA_VISIBLE_DEVICES`` entry of a CUDA ordinal: an index, or a UUID when the
    variable names devices by UUID; the ordinal itself when the variable is unset.

    An index is NVML's only when CUDA orders GPUs as NVML does (PCI bus order):
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, or a single GPU. CUDA's default order is fastest
    first, so prefer :func:`nvml_ids`, which matches by UUID or PCI bus id.
    """
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return cuda_index
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if cuda_index >= len(entries):
        return cuda_index
    entry = entries[cuda_index]
    try:
        return int(entry)
    except ValueError:
        return entry  # "GPU-..." UUID (or "MIG-...")


def pci_bus_id(props: object) -> str | None:
    """NVML's spelling of a device's PCI bus id (``00000000:3B:00.0``) from CUDA device
    properties with ``pci_domain_id``, ``pci_bus_id`` and ``pci_device_id`` (newer torch
    builds), else None."""
    parts = [getattr(props, f"pci_{name}_id", None) for name in ("domain", "bus", "device")]
    if not all(isinstance(p, int) for p in parts):
        return None
    domain, bus, device = parts
    return f"{domain:08X}:{bus:02X}:{device:02X}.0"


def nvml_ids(cuda_index: int, props: object | None = None,
             visible: str | None = None) -> list[int | str]:
    """How NVML can find the GPU behind ``cuda:<cuda_index>``, best first.

    ``props`` are the CUDA device properties (``torch.cuda.get_device_properties``;
    looked up when torch is already imported and None is given). Their ``uuid`` names the
    device as NVML does once prefixed (``GPU-<uuid>``, or ``MIG-<uuid>`` for a MIG
    instance); then the PCI bus id where the properties have it (:func:`pci_bus_id`);
    last the ``CUDA_VISIBLE_DEVICES`` entry or the ordinal (:func:`nvml_index`), which is
    NVML's index only when CUDA orders GPUs by PCI bus.
    """
    if props is None:
        props = _cuda_properties(cuda_index)
    ids: list[int | str] = []
    uuid = str(getattr(props, "uuid", "") or "") if props is not None else ""
    if uuid:
        if uuid.startswith(("GPU-", "MIG-")):
            ids.append(uuid)
        else:
            ids += [f"GPU-{uuid}", f"MIG-{uuid}"]
    bus = pci_bus_id(props) if props is not None else None
    if bus:
        ids.append(bus)
    fallback = nvml_index(cuda_index, visible)
    if fallback not in ids:
        ids.append(fallback)
    return ids


def _cuda_properties(cuda_index: int) -> object | None:
    """torch's properties of ``cuda:<cuda_index>`` when torch is imported and sees it."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.get_device_properties(cuda_index)
    except Exception:  # telemetry must never break a measurement
        return None
    return None


def matched_by(ident: int | str) -> str:
    """How an identifier from :func:`nvml_ids` names a GPU: uuid, pci_bus_id or index."""
    if isinstance(ident, int):
        return "index"
    if ident.startswith(("GPU-", "MIG-")):
        return "uuid"
    return "pci_bus_id" if ":" in ident else "index"


_SHARED: dict[tuple[int | str, ...], NvmlProbe] = {}
_SHARED_LOCK = threading.Lock()


def shared_probe(cuda_index: int) -> NvmlProbe:
    """One :class:`NvmlProbe` per CUDA device for the whole process: NVML is initialised
    once (it counts ``nvmlInit`` calls until as many ``nvmlShutdown``), not per reading.
    Released when the process ends."""
    key = tuple(nvml_ids(cuda_index))
    with _SHARED_LOCK:
        probe = _SHARED.get(key)
        if probe is None:
            probe = _SHARED[key] = NvmlProbe(list(key))
        return probe


class NvmlFacts(TypedDict, total=False):
    """What :meth:`NvmlProbe.facts` reports; only ``nvml`` and ``reason`` without NVML."""

    nvml: bool
    reason: str | None
    gpu: str | None
    driver: str | None
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    max_sm_clock_mhz: int | None
    max_mem_clock_mhz: int | None
    temperature_c: int | None
    power_limit_w: float | None
    memory_total_mb: float
    memory_used_mb: float
    clock_event_reasons: list[str]
    uuid: str | None
    pci_bus_id: str | None
    matched_by: str | None
    mig: bool


class NvmlWindow(TypedDict, total=False):
    """What :meth:`NvmlProbe.stop` reports about a window; without NVML only ``nvml``,
    ``reason`` and ``seconds``. Energy in mJ, power in W, clocks in MHz."""

    nvml: bool
    reason: str | None
    seconds: float
    samples: int
    sample_errors: int
    reasons_supported: bool
    reasons: list[str]
    throttled: bool
    energy_mj: float | None
    mean_power_w: float | None
    max_temperature_c: int | None
    min_sm_clock_mhz: int | None
    max_sm_clock_mhz: int | None


class ComputeProcess(TypedDict):
    """One compute process on a GPU: host PID and memory in MB (None where hidden)."""

    pid: int
    used_mb: float | None


@dataclass
class _Window:
    """What the sampler gathered since :meth:`NvmlProbe.start`."""

    t0: float
    energy0: int | None = None
    mask: int = 0
    samples: int = 0
    errors: int = 0
    temps: list[int] = field(default_factory=list)
    clocks: list[int] = field(default_factory=list)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlProbe:
    """One GPU seen through NVML.

    ``index`` names the GPU: NVML's index, a UUID (``GPU-...``, ``MIG-...``), a PCI bus id
    (``00000000:3B:00.0``), or a list of them tried in order (:func:`nvml_ids`);
    ``matched_by`` then says which kind found it. On a MIG instance the GPU-wide readings
    (clocks, temperature, power, energy) come from its parent GPU, which NVML answers
    for; compute processes from the instance. ``nvml`` is the pynvml module or a
    stand-in; by default ``pynvml`` is imported on first use. ``interval_s`` is how often
    the background thread samples between :meth:`start` and :meth:`stop`.
    """

    # ``nvml`` is typed Any: pynvml ships no type information, and tests pass a
    # stand-in object with the same functions.
    def __init__(self, index: int | str | Sequence[int | str] = 0, nvml: Any = None,
                 interval_s: float = 0.02) -> None:
        self.index = index
        self.matched_by: str | None = None  # uuid, pci_bus_id or index, once opened
        self.mig = False
        self.interval_s = interval_s
        self.reason: str | None = None  # why NVML is not available, once known
        self._nvml: Any = nvml
        self._handle: object = None  # NVML's opaque handle of the GPU (the parent of a MIG)
        self._device_handle: object = None  # the handle the identifier matched
        self._ready: bool | None = None
        self._error: type[BaseException] = Exception
        self._reasons_fn: Callable[[object], int] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._window: _Window | None = None

    # -- setup --------------------------------------------------------------

    def available(self) -> bool:
        """Whether NVML answers for this GPU; if not, ``reason`` says why."""
        if self._ready is None:
            self._ready = self._open()
        return self._ready

    def _open(self) -> bool:
        nvml = self._nvml
        if nvml is None:
            try:
                nvml = importlib.import_module("pynvml")
            except ImportError as exc:
                self.reason = (f"pynvml is not importable ({exc}); "
                               "install nvidia-ml-py for GPU telemetry")
                return False
            self._nvml = nvml
        self._error = getattr(nvml, "NVMLError", Exception)
        try:
            nvml.nvmlInit()
        except (self._error, OSError) as exc:
            self.reason = f"NVML could not start: {type(exc).__name__}: {exc}"
            return False
        ids = [self.index] if isinstance(self.index, (int, str)) else list(self.index)
        errors = []
        for ident in ids:
            try:
                self._device_handle = self._handle_of(nvml, ident)
            except (self._error, ValueError) as exc:
                errors.append(f"{ident!r}: {type(exc).__name__}: {exc}")
                continue
            self.matched_by = matched_by(ident)
            break
        else:
            self.reason = "NVML has no device " + "; ".join(errors or ["(no identifier)"])
            self._shutdown()
            return False
        self._handle = self._device_handle
        is_mig = self._call("nvmlDeviceIsMigDeviceHandle", self._device_handle)
        if int(getattr(is_mig, "value", is_mig) or 0):  # pynvml returns a ctypes c_uint
            parent = self._call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
                                self._device_handle)
            if parent is not None:
                self.mig, self._handle = True, parent
        self._reasons_fn = self._pick_reasons_fn()
        return True

    @staticmethod
    def _handle_of(nvml: Any, ident: int | str) -> object:
        kind = matched_by(ident)
        if kind == "uuid":
            return nvml.nvmlDeviceGetHandleByUUID(ident)
        if kind == "pci_bus_id":
            return nvml.nvmlDeviceGetHandleByPciBusId(ident)
        return nvml.nvmlDeviceGetHandleByIndex(int(ident))

    def _pick_reasons_fn(self) -> Callable[[object], int] | None:
        """The clock-event reasons call this driver answers: the new name, else the old."""
        for name in ("nvmlDeviceGetCurrentClocksEventReasons",
                     "nvmlDeviceGetCurrentClocksThrottleReasons"):
            fn = getattr(self._nvml, name, None)
            if fn is None:
                continue
            try:
                fn(self._handle)
            except self._error:
                continue
            return fn
        return None

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # nothing to do about a failed shutdown
            pass

    def close(self) -> None:
        """Stop sampling and release NVML (it counts inits and shutdowns)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._ready:
            self._shutdown()
        self._ready = None

    def __enter__(self) -> NvmlProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, *args: object) -> Any:
        """``nvml.<name>(*args)``, or None where this GPU or driver does not support it.

        Any: whatever that (untyped) NVML function returns."""
        fn = getattr(self._nvml, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except self._error:
            return None

    def _const(self, name: str, default: int) -> int:
        return int(getattr(self._nvml, name, default))

    # -- facts --------------------------------------------------------------

    def facts(self) -> NvmlFacts:
        """Driver, GPU name, clocks now and at most, temperature, power limit, memory."""
        if not self.available():
            return {"nvml": False, "reason": self.reason}
        h = self._handle
        sm, mem = self._const("NVML_CLOCK_SM", 1), self._const("NVML_CLOCK_MEM", 2)
        driver = self._call("nvmlSystemGetDriverVersion")
        name = self._call("nvmlDeviceGetName", h)
        limit_mw = self._call("nvmlDeviceGetPowerManagementLimit", h)
        out: NvmlFacts = {
            "nvml": True,
            "gpu": _text(name) if name is not None else None,
            "driver": _text(driver) if driver is not None else None,
            "sm_clock_mhz": self._call("nvmlDeviceGetClockInfo", h, sm),
            "mem_clock_mhz": self._call("nvmlDeviceGetClockInfo", h, mem),
            "max_sm_clock_mhz": self._call("nvmlDeviceGetMaxClockInfo", h, sm),
            "max_mem_clock_mhz": self._call("nvmlDeviceGetMaxClockInfo", h, mem),
            "temperature_c": self._call("nvmlDeviceGetTemperature", h,
                                        self._const("NVML_TEMPERATURE_GPU", 0)),
            "power_limit_w": limit_mw / 1000.0 if limit_mw is not None else None,
        }
        uuid = self._call("nvmlDeviceGetUUID", self._device_handle)
        out["uuid"] = _text(uuid) if uuid is not None else None
        pci = self._call("nvmlDeviceGetPciInfo", h)
        bus = getattr(pci, "busId", None) if pci is not None else None
        out["pci_bus_id"] = _text(bus) if bus is not None else None
        out["matched_by"] = self.matched_by
        out["mig"] = self.mig
        info = self._call("nvmlDeviceGetMemoryInfo", self._device_handle)
        if info is not None:
            out["memory_total_mb"] = info.total / 2**20
            out["memory_used_mb"] = info.used / 2**20
        mask = self._reasons()
        if mask is not None:
            out["clock_event_reasons"] = reason_names(mask, ignore=0)
        return out

    def _reasons(self) -> int | None:
        if self._reasons_fn is None:
            return None
        try:
            return int(self._reasons_fn(self._handle))
        except self._error:
            return None

    def _energy_mj(self) -> int | None:
        value = self._call("nvmlDeviceGetTotalEnergyConsumption", self._handle)
        return int(value) if value is not None else None

    def energy_mj(self) -> int | None:
        """The GPU's energy counter (mJ since the driver loaded; NVML updates it every
        20-100 ms); None without NVML or where the GPU has no counter (before Volta)."""
        return self._energy_mj() if self.available() else None

    def power_limit_w(self) -> float | None:
        """The enforced power limit (W), or None."""
        if not self.available():
            return None
        limit_mw = self._call("nvmlDeviceGetPowerManagementLimit", self._handle)
        return limit_mw / 1000.0 if limit_mw is not None else None

    # -- a measurement window ----------------------------------------------

    def start(self) -> None:
        """Begin a window: read the energy counter and sample until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("NvmlProbe.start() called twice without stop()")
        self._window = _Window(t0=time.perf_counter())
        if not self.available():
            return
        self._window.energy0 = self._energy_mj()
        self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hwopt-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> NvmlWindow:
        """End the window: reasons seen, energy used, temperature and SM clock range."""
        if self._window is None:
            raise RuntimeError("NvmlProbe.stop() called without start()")
        w = self._window
        seconds = time.perf_counter() - w.t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if not self.available():
            self._window = None
            return {"nvml": False, "reason": self.reason, "seconds": seconds}
        self._sample()
        energy1 = self._energy_mj()
        energy = None
        if w.energy0 is not None and energy1 is not None and energy1 >= w.energy0:
            energy = float(energy1 - w.energy0)
        reasons = reason_names(w.mask)
        temps, clocks = w.temps, w.clocks
        self._window = None
        return {
            "nvml": True,
            "seconds": seconds,
            "samples": w.samples,
            "sample_errors": w.errors,
            "reasons_supported": self._reasons_fn is not None,
            "reasons": reasons,
            "throttled": bool(reasons),
            "energy_mj": energy,
            "mean_power_w": energy / 1000.0 / seconds if energy is not None and seconds > 0
            else None,
            "max_temperature_c": max(temps) if temps else None,
            "min_sm_clock_mhz": min(clocks) if clocks else None,
            "max_sm_clock_mhz": max(clocks) if clocks else None,
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        w = self._window
        if w is None:
            return
        try:
            mask = self._reasons()
            temp = self._call("nvmlDeviceGetTemperature", self._handle,
                              self._const("NVML_TEMPERATURE_GPU", 0))
            clock = self._call("nvmlDeviceGetClockInfo", self._handle,
                               self._const("NVML_CLOCK_SM", 1))
        except Exception:  # a sampler thread must not die mid-window
            with self._lock:
                w.errors += 1
            return
        with self._lock:
            w.samples += 1
            if mask is not None:
                w.mask |= mask
            if temp is not None:
                w.temps.append(temp)
            if clock is not None:
                w.clocks.append(clock)

    # -- memory -------------------------------------------------------------

    def compute_processes(self) -> list[ComputeProcess]:
        """Compute processes on this GPU with their memory in MB (None where hidden).

        NVML reports host PIDs: inside a container with its own PID namespace the
        PIDs do not match ``os.getpid()``.
        """
        if not self.available():
            return []
        procs = self._call("nvmlDeviceGetComputeRunningProcesses", self._device_handle) or []
        out: list[ComputeProcess] = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.append({"pid": int(p.pid),
                        "used_mb": used / 2**20 if used is not None else None})
        return out

    def process_memory_mb(self, pid: int | None = None) -> float | None:
        """GPU memory NVML attributes to ``pid`` (default: this process), in MB.

        None when NVML is missing, the process is not listed (not yet using the GPU,
        or a container PID namespace) or its usage is hidden.
        """
        pid = os.getpid() if pid is None else pid
        total, found = 0.0, False
        for p in self.compute_processes():
            if p["pid"] == pid and p["used_mb"] is not None:
                total += p["used_mb"]
                found = True
        return total if found else None
