"""The HTML report in a real headless browser: it loads, plotly.js draws every chart, no JS errors.

Needs Debian's ``chromium`` (``apt-get install chromium``); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("plotly", reason="the HTML report needs plotly (pytest-hwopt[html])")

from pytest_hwopt.results import html as html_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install chromium); "
           "the headless-browser check of the HTML report needs it")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
PLOTS = ("plot-speedups", "plot-latency", "plot-cold-start", "plot-roofline")


def _document() -> dict:
    def variant(test, name, median, **extra):
        samples = [median * (1 + 0.02 * ((i * 7) % 11 - 5)) for i in range(40)]
        return {"test": test, "variant": name, "median_ms": median, "p95_ms": median * 1.1,
                "samples": samples, "first_call_ms": median * 4, "prepare_s": None, **extra}

    def check(test, kind, variant_, vs, budget, measured, low, high, unit, status, msg,
              metric=""):
        return {"test": test, "kind": kind, "variant": variant_, "vs": vs, "budget": budget,
                "measured": measured, "low": low, "high": high, "unit": unit,
                "status": status, "passed": status == "passed", "message": msg,
                "metric": metric, "budget_key": "", "detail": {}}

    pair, export, gemm = ("test_a.py::test_pair", "test_a.py::test_export[<script>x</script>]",
                          "test_b.py::test_gemm")
    peaks = {"peak_gbs": 40.0, "peak_tflops": 0.2}
    return {
        "version": "0.1.0", "format": 1,
        "environment": {"python": "3.11", "device": "cpu", "device_name": "Test CPU"},
        "tests": [{"test": t, "device": "cpu", "rounds": 8, "stopped": "decided",
                   "contention": {}, "telemetry": {}, "notes": {"ratio": 2.5}}
                  for t in (pair, export, gemm)],
        "results": [
            variant(pair, "slow", 8.0), variant(pair, "fast", 0.8),
            variant(export, "pytorch", 3.0, prepare_s=0.0),
            variant(export, "onnxruntime", 1.0, prepare_s=0.9),
            variant(gemm, "gemm", 30.0, bytes=1.2e7, flops=2.1e9, achieved_gbs=0.4,
                    achieved_tflops=0.07, achieved_intensity=170.0, roofline_fraction=0.35,
                    **peaks),
            variant(gemm, "gemv", 5.0, bytes=6.7e7, flops=3.3e7, achieved_gbs=13.4,
                    achieved_tflops=0.0066, achieved_intensity=0.5, roofline_fraction=0.33,
                    **peaks),
        ],
        "checks": [
            check(pair, "speedup", "fast", "slow", 2.0, 10.0, 8.1, 12.2, "x", "passed",
                  "speedup of fast vs slow: 10.00x >= 2.0x"),
            check(export, "speedup", "onnxruntime", "pytorch", 4.0, 3.0, 2.8, 3.2, "x",
                  "failed", "speedup of onnxruntime vs pytorch: 3.00x < 4.0x"),
            check(pair, "latency", "fast", None, 5.0, 0.88, 0.85, 0.9, "ms", "passed",
                  "p95 latency of fast: 0.88 ms <= 5 ms", metric="p95_ms"),
        ],
    }


def _chromium(*args: str, profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    html_report.write_html(path, _document())
    return path


def test_charts_render_without_js_errors(page, tmp_path):
    run = _chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
                    profile=tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    body = re.search(r"<body\b[^>]*>", dom)
    assert body, dom[:2000]
    assert "data-hwopt-errors" not in body.group(0), body.group(0)
    assert 'data-hwopt-rendered="1"' in body.group(0), body.group(0)
    assert f'data-hwopt-plots="{len(PLOTS)}"' in body.group(0)
    # plotly.js built the charts at run time: its containers and SVG layers exist
    assert dom.count('class="plot-container plotly"') == len(PLOTS)
    assert dom.count('class="main-svg"') >= 2 * len(PLOTS)
    for pid in PLOTS:
        chart = dom.split(f'id="{pid}"', 1)[1].split('class="hwopt-plot"', 1)[0]
        assert "main-svg" in chart, pid
    # the bars, boxes and points were drawn, not just the axes
    doc = _document()
    assert dom.count('class="trace boxes"') == len(doc["results"])  # one box per variant
    assert dom.count('class="box"') == len(doc["results"])
    assert 'class="trace bars"' in dom and 'class="errorbar"' in dom
    assert dom.count('class="trace scatter') >= 3  # budget ticks, roof, points
    # escaped text stays text
    assert "<script>x</script>" not in dom.split("</head>", 1)[1]
    assert "&lt;script&gt;x&lt;/script&gt;" in dom


def test_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "shot.png"
    run = _chromium("--virtual-time-budget=5000", f"--screenshot={shot}",
                    "--window-size=1400,2400", page.as_uri(), profile=tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.is_file()
    assert shot.stat().st_size > 30_000  # a blank page of this size compresses to a few KB
    pixels = _png_pixels(shot.read_bytes())
    assert pixels.shape[:2] == (2400, 1400)
    assert tuple(pixels[5, 5, :3]) == (0x26, 0x32, 0x38)  # the report's dark header
    colours = np.unique(pixels[::4, ::4, :3].reshape(-1, 3), axis=0)
    assert len(colours) > 100, f"only {len(colours)} distinct colours: a blank page?"
    # the charts' area (below the summary) is not just background
    lower = pixels[1200:, :, :3].reshape(-1, 3)
    assert (lower.min(axis=1) < 200).mean() > 0.005


def _png_pixels(data: bytes) -> np.ndarray:
    """The pixels (height, width, channels) of an 8-bit RGB(A) PNG: stdlib zlib + NumPy."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = depth = ctype = interlace = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
    bpp = 3 if ctype == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):  # undo the per-row filters (PNG spec, section 9)
        kind, cur = int(raw[y, 0]), raw[y, 1:].astype(np.int64)
        if kind == 1:  # Sub
            cur = np.cumsum(cur.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif kind == 2:  # Up
            cur = (cur + prev) & 0xFF
        elif kind in (3, 4):  # Average, Paeth: each byte needs the one decoded before it
            c, p = cur.tolist(), prev.tolist()
            for i in range(stride):
                a = c[i - bpp] if i >= bpp else 0
                b = p[i]
                if kind == 3:
                    c[i] = (c[i] + ((a + b) >> 1)) & 0xFF
                else:
                    d = p[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - d), abs(a - d), abs(a + b - 2 * d)
                    c[i] = (c[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else d)) & 0xFF
            cur = np.array(c, dtype=np.int64)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)
