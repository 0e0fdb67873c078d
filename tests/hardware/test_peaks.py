"""Published peak table, roofline arithmetic, measured peaks and their cache."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pytest_hwopt.hardware import peaks


@pytest.mark.parametrize(("device_name", "entry", "gbs", "bf16"), [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", 3350.0, 989.4),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe", 2000.0, 756.0),
    ("NVIDIA H200", "NVIDIA H200 SXM", 4800.0, 989.4),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80GB", 2039.0, 312.0),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 80GB PCIe", 1935.0, 312.0),
    ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB", 1555.0, 312.0),
    ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB", 1555.0, 312.0),
    ("NVIDIA L4", "NVIDIA L4", 300.0, 121.0),
    ("NVIDIA L40S", "NVIDIA L40S", 864.0, 362.0),
    ("NVIDIA A10", "NVIDIA A10", 600.0, 125.0),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", 1008.0, 165.2),
])
def test_published_peak_by_name(device_name: str, entry: str, gbs: float, bf16: float) -> None:
    peak = peaks.published_peak(device_name)
    assert peak is not None
    assert peak["name"] == entry
    assert peak["gbs"] == gbs
    assert peak["tflops"]["bf16"] == bf16
    assert peak["source"].startswith("published datasheet")


def test_t4_has_fp16_but_no_bf16() -> None:
    peak = peaks.published_peak("Tesla T4")
    assert peak is not None
    assert (peak["gbs"], peak["tflops"]["fp16"]) == (320.0, 65.0)
    assert "bf16" not in peak["tflops"]


@pytest.mark.parametrize("device_name", [
    "NVIDIA H100 NVL", "NVIDIA A10G", "NVIDIA GeForce RTX 4070 Ti", "AMD EPYC 7B13", "cpu", "",
])
def test_unknown_or_ambiguous_devices_have_no_peak(device_name: str) -> None:
    assert peaks.published_peak(device_name) is None


def test_every_entry_cites_a_datasheet_and_has_a_bandwidth() -> None:
    for entry in peaks.PUBLISHED:
        assert entry.source.startswith("published datasheet")
        assert entry.gbs > 0 and entry.tflops and all(v > 0 for v in entry.tflops.values())


def test_achieved_exact() -> None:
    got = peaks.achieved(2e9, 4e12, 2.0)
    assert got == {"gbs": 1.0, "tflops": 2.0, "intensity": 2000.0}
    assert peaks.achieved(0, 1e12, 1.0)["intensity"] == math.inf
    assert peaks.achieved(1e9, 0, 1.0)["intensity"] == 0.0


@pytest.mark.parametrize(("args", "message"), [
    ((1e9, 1e9, 0.0), "seconds"), ((1e9, 1e9, math.nan), "seconds"),
    ((-1.0, 1e9, 1.0), ">= 0"), ((1e9, -1.0, 1.0), ">= 0"),
])
def test_achieved_rejects_bad_input(args: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        peaks.achieved(*args)


def test_roofline_fraction_compute_bound() -> None:
    # intensity 1000 FLOP/B, ridge 100e12/2000e9 = 50: compute-bound, bound = 100 TFLOP/s
    assert peaks.roofline_fraction(1e9, 1e12, 1.0, 2000.0, 100.0) == pytest.approx(0.01)


def test_roofline_fraction_memory_bound() -> None:
    # intensity 1 FLOP/B: bound = 1 * 2000 GB/s = 2 TFLOP/s; achieved 1 TFLOP/s
    assert peaks.roofline_fraction(1e9, 1e9, 1e-3, 2000.0, 100.0) == pytest.approx(0.5)


def test_roofline_fraction_bytes_only_is_bandwidth_fraction() -> None:
    assert peaks.roofline_fraction(1e9, 0, 1e-3, 2000.0, 100.0) == pytest.approx(0.5)


def test_roofline_fraction_flops_only_is_compute_fraction() -> None:
    assert peaks.roofline_fraction(0, 5e12, 1.0, 2000.0, 100.0) == pytest.approx(0.05)


def test_roofline_fraction_at_the_ridge_point() -> None:
    ridge = peaks.ridge_point(2000.0, 100.0)
    assert ridge == pytest.approx(50.0)
    # at the ridge both bounds meet: 1 GB at 50 FLOP/B in 10 ms = 100 GB/s, 5 TFLOP/s
    assert peaks.roofline_fraction(1e9, 50e9, 0.01, 2000.0, 100.0) == pytest.approx(0.05)


def test_roofline_fraction_rejects_zero_peaks() -> None:
    with pytest.raises(ValueError, match="peaks"):
        peaks.roofline_fraction(1e9, 1e9, 1.0, 0.0, 100.0)


TINY: dict[str, Any] = {"budget_s": 0.05, "copy_mb": 1, "gemm_n": 32}


@pytest.fixture
def torch_installed() -> None:
    pytest.importorskip("torch")


@pytest.mark.usefixtures("torch_installed")
def test_measure_peaks_cpu_tiny_without_cache() -> None:
    result = peaks.measure_peaks("cpu", **TINY)
    assert result["cached"] is False
    assert result["kind"] == "cpu"
    assert result["gbs"] > 0
    assert set(result["tflops"]) == {"fp32", "bf16"}
    assert all(v is None or v > 0 for v in result["tflops"].values())
    assert result["sizes"] == {"copy_mb": 1, "gemm_n": 32}


@pytest.mark.usefixtures("torch_installed")
def test_measure_peaks_cache_written_read_back_and_rebuilt(tmp_path: Path) -> None:
    first = peaks.measure_peaks("cpu", cache_dir=tmp_path, **TINY)
    assert first["cached"] is False
    files = list(tmp_path.glob("peaks-*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert f"torch {first['torch']}|threads " in stored["key"]  # CPU peaks depend on threads
    assert stored["key"].startswith(first["device"])

    again = peaks.measure_peaks("cpu", cache_dir=tmp_path, **TINY)
    assert again["cached"] is True
    assert again["gbs"] == first["gbs"] and again["tflops"] == first["tflops"]

    files[0].write_text("{not json")
    rebuilt = peaks.measure_peaks("cpu", cache_dir=tmp_path, **TINY)
    assert rebuilt["cached"] is False
    assert json.loads(files[0].read_text())["result"]["gbs"] == rebuilt["gbs"]

    files[0].write_text(json.dumps({"key": "another machine", "result": {"gbs": 1.0,
                                                                          "tflops": {}}}))
    assert peaks.measure_peaks("cpu", cache_dir=tmp_path, **TINY)["cached"] is False

    refreshed = peaks.measure_peaks("cpu", cache_dir=tmp_path, refresh=True, **TINY)
    assert refreshed["cached"] is False


def test_read_cache_rejects_wrong_shapes(tmp_path: Path) -> None:
    path = tmp_path / "peaks.json"
    assert peaks.read_cache(path, "k") is None  # missing
    for content in ("[]", '{"key": "k"}', '{"key": "k", "result": {"gbs": "fast"}}',
                    '{"key": "k", "result": {"gbs": 1.0, "tflops": []}}'):
        path.write_text(content)
        assert peaks.read_cache(path, "k") is None, content
    peaks.write_cache(path, "k", {"gbs": 1.0, "tflops": {"fp32": 2.0}})
    assert peaks.read_cache(path, "k") == {"gbs": 1.0, "tflops": {"fp32": 2.0}}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.usefixtures("torch_installed")
def test_measure_peaks_rejects_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        peaks.measure_peaks("cpu", dtypes=("fp8",), **TINY)


def test_import_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; import pytest_hwopt.hardware.peaks, pytest_hwopt.hardware.nvml, "
            "pytest_hwopt.hardware.cudagraph; "
            "sys.exit(1 if {'torch', 'pynvml'} & set(sys.modules) else 0)")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
