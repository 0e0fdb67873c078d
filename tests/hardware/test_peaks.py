"""Measured peaks and their cache; the old import paths of the table and the roofline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_hwopt.hardware import datasheets, peaks, roofline

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
            "pytest_hwopt.hardware.cudagraph, pytest_hwopt.hardware.memory, "
            "pytest_hwopt.hardware.monitor, pytest_hwopt.hardware.environment; "
            "sys.exit(1 if {'torch', 'pynvml'} & set(sys.modules) else 0)")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_table_and_roofline_still_importable_from_peaks() -> None:
    assert peaks.published_peak is datasheets.published_peak
    assert peaks.PUBLISHED is datasheets.PUBLISHED
    assert (peaks.achieved, peaks.ridge_point, peaks.roofline_fraction) == (
        roofline.achieved, roofline.ridge_point, roofline.roofline_fraction)
