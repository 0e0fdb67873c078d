"""Roofline arithmetic: achieved GB/s and TFLOP/s, the ridge point, the fraction of the bound.

Pure functions of bytes, FLOPs, seconds and peaks (GB/s, TFLOP/s); the peaks
come from :mod:`.peaks` (measured) or :mod:`.datasheets` (published).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_hwopt.core.measurement import Measurement
    from pytest_hwopt.hardware.peaks import MeasuredPeaks


def achieved(bytes_moved: float, flops: float, seconds: float) -> dict[str, float]:
    """``{"gbs", "tflops", "intensity"}``: GB/s, TFLOP/s and arithmetic intensity
    (FLOP/byte, ``inf`` without bytes) of work done in ``seconds``.

    Raises :class:`ValueError` for seconds that are not finite and > 0, or negative work.
    """
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
    if bytes_moved < 0 or flops < 0:
        raise ValueError(f"bytes and flops must be >= 0, got {bytes_moved!r}, {flops!r}")
    intensity = flops / bytes_moved if bytes_moved > 0 else math.inf
    return {"gbs": bytes_moved / seconds / 1e9, "tflops": flops / seconds / 1e12,
            "intensity": intensity}


def ridge_point(peak_gbs: float, peak_tflops: float) -> float:
    """Intensity (FLOP/byte) above which work is compute-bound on this device."""
    return peak_tflops * 1e12 / (peak_gbs * 1e9)


def roofline_fraction(bytes_moved: float, flops: float, seconds: float, peak_gbs: float,
                      peak_tflops: float) -> float:
    """Achieved performance over the roofline bound at the work's intensity.

    With FLOPs: achieved TFLOP/s over ``min(peak_tflops, intensity * peak_gbs)``.
    Bytes only (``flops == 0``): achieved GB/s over ``peak_gbs``. Peaks that are
    not > 0 raise :class:`ValueError`.
    """
    if peak_gbs <= 0 or peak_tflops <= 0:
        raise ValueError(f"peaks must be > 0, got {peak_gbs!r} GB/s, {peak_tflops!r} TFLOP/s")
    got = achieved(bytes_moved, flops, seconds)
    if flops == 0:
        return got["gbs"] / peak_gbs
    bound_tflops = min(peak_tflops, got["intensity"] * peak_gbs * 1e9 / 1e12)
    return got["tflops"] / bound_tflops


def annotate_roofline(measurements: Mapping[str, Measurement], peak: MeasuredPeaks) -> None:
    """Add achieved GB/s, TFLOP/s, intensity and the roofline fraction to each measurement
    whose ``extra`` declares its work (``bytes``, ``flops``; ``dtype`` picks the TFLOP/s
    peak, default ``fp32``). Timed by the median; non-finite figures are saved as None.

    The fraction and the peaks used are added only where ``peak`` has a bandwidth and,
    for work with FLOPs, a rate for the dtype.
    """
    for m in measurements.values():
        bytes_moved = m.extra.get("bytes") or 0.0
        flops = m.extra.get("flops") or 0.0
        if not (bytes_moved or flops):
            continue
        seconds = m.median_ms / 1000.0
        got = achieved(bytes_moved, flops, seconds)
        m.extra["achieved_gbs"] = _finite(got["gbs"])
        m.extra["achieved_tflops"] = _finite(got["tflops"])
        m.extra["achieved_intensity"] = _finite(got["intensity"])
        dtype = m.extra.get("dtype", "fp32")
        peak_tflops = (peak.get("tflops") or {}).get(dtype)
        peak_gbs = peak.get("gbs")
        if peak_gbs and (peak_tflops or not flops):
            m.extra["roofline_fraction"] = roofline_fraction(
                bytes_moved, flops, seconds, peak_gbs, peak_tflops or float("inf"))
            m.extra["peak_gbs"] = peak_gbs
            m.extra["peak_tflops"] = peak_tflops


def _finite(value: float) -> float | None:
    """``value``, or None for inf and nan (JSON has neither)."""
    return value if math.isfinite(value) else None
