"""pytest_hwopt.hardware.memory: resident-memory peaks against a fake /proc, and the probe
each device hands out. CudaPeak itself needs a GPU (tests/gpu)."""

from __future__ import annotations

from pytest_hwopt.hardware.devices import Device, cpu_device
from pytest_hwopt.hardware.memory import CudaPeak, MemoryPeak, ResidentPeak, peak_probe


def fake_proc(tmp_path, rss_kb=102400, hwm_kb=102400):
    proc = tmp_path / "self"
    proc.mkdir()
    write_status(proc, rss_kb, hwm_kb)
    (proc / "clear_refs").write_text("")
    return proc


def write_status(proc, rss_kb, hwm_kb):
    (proc / "status").write_text(
        "Name:\tpython\n"
        f"VmHWM:\t{hwm_kb:>8} kB\n"
        f"VmRSS:\t{rss_kb:>8} kB\n"
        "Threads:\t4\n")


def test_resident_peak_measures_growth_in_mb(tmp_path):
    proc = fake_proc(tmp_path, rss_kb=102400, hwm_kb=300000)
    calls = []

    def fn():
        calls.append(1)
        # clear_refs was written before the call: the peak restarted from the current RSS
        assert (proc / "clear_refs").read_text() == "5"
        write_status(proc, rss_kb=110000, hwm_kb=153600)

    peak = ResidentPeak(proc)
    assert peak.available()
    assert peak.measure(fn) == 50.0  # (153600 - 102400) kB / 1024
    assert calls == [1]


def test_resident_peak_never_negative(tmp_path):
    proc = fake_proc(tmp_path, rss_kb=102400)
    assert ResidentPeak(proc).measure(lambda: write_status(proc, 90000, 90000)) == 0.0


def test_resident_peak_unavailable_without_files(tmp_path):
    proc = tmp_path / "self"
    proc.mkdir()
    (proc / "status").write_text("VmRSS:\t1 kB\nVmHWM:\t2 kB\n")
    peak = ResidentPeak(proc)
    assert not peak.available()
    calls = []
    assert peak.measure(lambda: calls.append(1)) is None
    assert calls == []


def test_resident_peak_missing_fields(tmp_path):
    proc = fake_proc(tmp_path)
    (proc / "status").write_text("Name:\tpython\nVmRSS:\t1000 kB\n")
    assert ResidentPeak(proc).measure(lambda: None) is None


def test_resident_peak_clear_refs_not_writable(tmp_path):
    proc = fake_proc(tmp_path)
    (proc / "clear_refs").unlink()
    (proc / "clear_refs").mkdir()  # exists, but writing to it fails with OSError
    assert ResidentPeak(proc).measure(lambda: None) is None


def test_resident_peak_kind():
    assert "VmHWM" in ResidentPeak.kind


def test_resident_peak_has_no_details(tmp_path):
    """The engine saves ``details`` only when there are some: none on the host."""
    proc = fake_proc(tmp_path)
    peak = ResidentPeak(proc)
    peak.measure(lambda: None)
    assert peak.details == {}


def test_each_device_gets_its_probe():
    probe: MemoryPeak = cpu_device().memory()
    assert isinstance(probe, ResidentPeak)
    cuda = Device("cuda", 1, "a GPU").memory()
    assert isinstance(cuda, CudaPeak) and cuda.index == 1 and cuda.details == {}
    assert isinstance(peak_probe("cuda", None), CudaPeak)
    assert "max_memory_allocated" in CudaPeak.kind


def test_cuda_peak_still_importable_from_devices():
    from pytest_hwopt.hardware import devices

    assert devices.CudaPeak is CudaPeak


class FakeAllocator:
    """torch.cuda's allocator statistics (bytes), as a call that allocates 10 MB sees them."""

    def __init__(self) -> None:
        self.allocated = 100 * 2**20
        self.peak = self.allocated

    def install(self, monkeypatch, torch):
        for name, fn in {
            "synchronize": lambda index=None: None,
            "reset_peak_memory_stats": lambda index=None: setattr(self, "peak", self.allocated),
            "memory_allocated": lambda index=None: self.allocated,
            "memory_reserved": lambda index=None: 2 * self.allocated,
            "max_memory_allocated": lambda index=None: self.peak,
            "max_memory_reserved": lambda index=None: 2 * self.peak,
        }.items():
            monkeypatch.setattr(torch.cuda, name, fn)

    def allocate_10mb(self):
        self.peak = max(self.peak, self.allocated + 10 * 2**20)


def test_cuda_peak_adds_what_a_backend_holds_outside_torch(monkeypatch):
    """TensorRT and ONNX Runtime keep their activations outside torch's allocator; their
    runners state it, so a budget compares like with like (the kind says so)."""
    import pytest

    torch = pytest.importorskip("torch")
    from pytest_hwopt.hardware import memory

    allocator = FakeAllocator()
    allocator.install(monkeypatch, torch)
    monkeypatch.setattr(memory, "nvml_process_mb", lambda index: 900.0)

    def engine_call():
        allocator.allocate_10mb()  # its outputs, from torch's allocator
        memory.report_held("engine context", 64.0)
        memory.report_held("engine context", 64.0)  # every call states it: counted once

    probe = CudaPeak(0)
    assert probe.measure(engine_call) == 74.0
    assert probe.details == {"allocated_peak_mb": 10.0, "reserved_peak_mb": 20.0,
                             "outside_torch_mb": 64.0, "nvml_process_mb": 900.0}
    assert probe.measure(allocator.allocate_10mb) == 10.0  # eager: torch's allocator only
    assert "outside torch's allocator" in CudaPeak.kind
    memory.report_held("outside a measurement", 1.0)  # a no-op
    assert probe.measure(lambda: None) == 0.0


def test_cuda_peak_is_unmeasured_when_a_backend_cannot_tell(monkeypatch):
    """ONNX Runtime's arena is read through NVML; where NVML cannot see the process, the
    figure is missing (the memory check says "not measured"), never torch's part alone."""
    import pytest

    torch = pytest.importorskip("torch")
    from pytest_hwopt.hardware import memory

    allocator = FakeAllocator()
    allocator.install(monkeypatch, torch)
    monkeypatch.setattr(memory, "nvml_process_mb", lambda index: None)

    def session_call():
        allocator.allocate_10mb()
        memory.report_held("onnxruntime session", None)

    probe = CudaPeak(0)
    assert probe.measure(session_call) is None
    assert probe.details["allocated_peak_mb"] == 10.0
    assert probe.details["outside_torch_mb"] is None
