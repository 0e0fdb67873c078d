"""The published peak table and how a device name finds its entry."""

from __future__ import annotations

import pytest

from pytest_hwopt.hardware import datasheets


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
    peak = datasheets.published_peak(device_name)
    assert peak is not None
    assert peak["name"] == entry
    assert peak["gbs"] == gbs
    assert peak["tflops"]["bf16"] == bf16
    assert peak["source"].startswith("published datasheet")


def test_t4_has_fp16_but_no_bf16() -> None:
    peak = datasheets.published_peak("Tesla T4")
    assert peak is not None
    assert (peak["gbs"], peak["tflops"]["fp16"]) == (320.0, 65.0)
    assert "bf16" not in peak["tflops"]


@pytest.mark.parametrize("device_name", [
    "NVIDIA H100 NVL", "NVIDIA A10G", "NVIDIA GeForce RTX 4070 Ti", "AMD EPYC 7B13", "cpu", "",
])
def test_unknown_or_ambiguous_devices_have_no_peak(device_name: str) -> None:
    assert datasheets.published_peak(device_name) is None


def test_every_entry_cites_a_datasheet_and_has_a_bandwidth() -> None:
    for entry in datasheets.PUBLISHED:
        assert entry.source.startswith("published datasheet")
        assert entry.gbs > 0 and entry.tflops and all(v > 0 for v in entry.tflops.values())
