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
