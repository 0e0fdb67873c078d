"""Roofline arithmetic, and the figures it adds to measurements that declared their work."""

from __future__ import annotations

import math

import pytest

from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.hardware import roofline
from pytest_hwopt.hardware.peaks import MeasuredPeaks


def test_achieved_exact() -> None:
    got = roofline.achieved(2e9, 4e12, 2.0)
    assert got == {"gbs": 1.0, "tflops": 2.0, "intensity": 2000.0}
    assert roofline.achieved(0, 1e12, 1.0)["intensity"] == math.inf
    assert roofline.achieved(1e9, 0, 1.0)["intensity"] == 0.0


@pytest.mark.parametrize(("args", "message"), [
    ((1e9, 1e9, 0.0), "seconds"), ((1e9, 1e9, math.nan), "seconds"),
    ((-1.0, 1e9, 1.0), ">= 0"), ((1e9, -1.0, 1.0), ">= 0"),
])
def test_achieved_rejects_bad_input(args: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        roofline.achieved(*args)


def test_roofline_fraction_compute_bound() -> None:
    # intensity 1000 FLOP/B, ridge 100e12/2000e9 = 50: compute-bound, bound = 100 TFLOP/s
    assert roofline.roofline_fraction(1e9, 1e12, 1.0, 2000.0, 100.0) == pytest.approx(0.01)


def test_roofline_fraction_memory_bound() -> None:
    # intensity 1 FLOP/B: bound = 1 * 2000 GB/s = 2 TFLOP/s; achieved 1 TFLOP/s
    assert roofline.roofline_fraction(1e9, 1e9, 1e-3, 2000.0, 100.0) == pytest.approx(0.5)


def test_roofline_fraction_bytes_only_is_bandwidth_fraction() -> None:
    assert roofline.roofline_fraction(1e9, 0, 1e-3, 2000.0, 100.0) == pytest.approx(0.5)


def test_roofline_fraction_flops_only_is_compute_fraction() -> None:
    assert roofline.roofline_fraction(0, 5e12, 1.0, 2000.0, 100.0) == pytest.approx(0.05)


def test_roofline_fraction_at_the_ridge_point() -> None:
    ridge = roofline.ridge_point(2000.0, 100.0)
    assert ridge == pytest.approx(50.0)
    # at the ridge both bounds meet: 1 GB at 50 FLOP/B in 10 ms = 100 GB/s, 5 TFLOP/s
    assert roofline.roofline_fraction(1e9, 50e9, 0.01, 2000.0, 100.0) == pytest.approx(0.05)


def test_roofline_fraction_rejects_zero_peaks() -> None:
    with pytest.raises(ValueError, match="peaks"):
        roofline.roofline_fraction(1e9, 1e9, 1.0, 0.0, 100.0)


def _measured(median_ms: float, **extra: object) -> Measurement:
    m = Measurement("v", [median_ms], [median_ms])
    m.extra.update(extra)  # type: ignore[typeddict-item]
    return m


PEAK: MeasuredPeaks = {"gbs": 2000.0, "tflops": {"fp32": 50.0, "bf16": 100.0, "fp16": None}}


def test_annotate_roofline_with_flops_and_bytes() -> None:
    m = _measured(1000.0, bytes=1e9, flops=1e12, dtype="bf16")
    plain = _measured(1.0)
    roofline.annotate_roofline({"v": m, "plain": plain}, PEAK)
    assert m.extra["achieved_gbs"] == pytest.approx(1.0)
    assert m.extra["achieved_tflops"] == pytest.approx(1.0)
    assert m.extra["achieved_intensity"] == pytest.approx(1000.0)
    assert m.extra["roofline_fraction"] == pytest.approx(0.01)
    assert (m.extra["peak_gbs"], m.extra["peak_tflops"]) == (2000.0, 100.0)
    assert plain.extra == {}  # no declared work: nothing added


def test_annotate_roofline_flops_only_keeps_intensity_json_safe() -> None:
    m = _measured(1000.0, flops=5e12)
    roofline.annotate_roofline({"v": m}, PEAK)
    assert m.extra["achieved_intensity"] is None  # inf has no JSON form
    assert m.extra["roofline_fraction"] == pytest.approx(0.1)


def test_annotate_roofline_without_a_peak_for_the_dtype() -> None:
    m = _measured(1000.0, bytes=1e9, flops=1e12, dtype="fp16")
    roofline.annotate_roofline({"v": m}, PEAK)
    assert m.extra["achieved_tflops"] == pytest.approx(1.0)
    assert "roofline_fraction" not in m.extra and "peak_gbs" not in m.extra


def test_annotate_roofline_bytes_only_needs_just_the_bandwidth() -> None:
    m = _measured(1.0, bytes=1e9)
    roofline.annotate_roofline({"v": m}, {"gbs": 2000.0, "tflops": {}})
    assert m.extra["roofline_fraction"] == pytest.approx(0.5)
    assert m.extra["peak_tflops"] is None


def test_annotate_roofline_still_importable_from_monitor() -> None:
    from pytest_hwopt.hardware import monitor

    assert monitor.annotate_roofline is roofline.annotate_roofline
