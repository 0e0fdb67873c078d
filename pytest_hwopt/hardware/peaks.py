"""Device peaks and roofline arithmetic.

Published peaks come from vendor datasheets (dense figures, without 2:4
sparsity); measured peaks come from a short probe (a device-to-device copy and
one GEMM per dtype) cached per machine. The roofline functions are pure.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DATASHEET = "published datasheet"


@dataclass(frozen=True)
class PublishedPeak:
    """Datasheet peaks of one GPU: memory bandwidth (GB/s) and dense TFLOP/s per dtype.

    ``fp32`` is the non-tensor (CUDA core) rate; ``tf32``, ``fp16`` and ``bf16``
    are dense tensor-core rates with FP32 accumulation.
    """

    name: str
    keys: tuple[str, ...]  # all must appear as words in the device name
    gbs: float
    tflops: dict[str, float]
    source: str
    exclude: tuple[str, ...] = ()

    def matches(self, device_name: str) -> bool:
        words = _words(device_name)
        return (all(_has(words, k) for k in self.keys)
                and not any(_has(words, k) for k in self.exclude))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gbs": self.gbs, "tflops": dict(self.tflops),
                "source": self.source}


def _words(name: str) -> str:
    return " " + " ".join(re.split(r"[^a-z0-9]+", name.lower())).strip() + " "


def _has(words: str, key: str) -> bool:
    return _words(key) in words


def _sheet(doc: str) -> str:
    return f"{DATASHEET}: {doc} (dense, without sparsity)"


# Most specific first: the first entry whose keys all appear in the name wins.
PUBLISHED: tuple[PublishedPeak, ...] = (
    PublishedPeak("NVIDIA H200 SXM", ("h200",), 4800.0,
                  {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
                  _sheet("NVIDIA H200 Tensor Core GPU datasheet"), exclude=("nvl",)),
    PublishedPeak("NVIDIA H100 PCIe", ("h100", "pcie"), 2000.0,
                  {"fp32": 51.0, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0},
                  _sheet("NVIDIA H100 Tensor Core GPU datasheet, PCIe")),
    PublishedPeak("NVIDIA H100 SXM", ("h100",), 3350.0,
                  {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
                  _sheet("NVIDIA H100 Tensor Core GPU datasheet, SXM"),
                  exclude=("pcie", "nvl")),
    PublishedPeak("NVIDIA A100 SXM4 80GB", ("a100", "sxm4", "80gb"), 2039.0,
                  {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
                  _sheet("NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM")),
    PublishedPeak("NVIDIA A100 80GB PCIe", ("a100", "80gb"), 1935.0,
                  {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
                  _sheet("NVIDIA A100 Tensor Core GPU datasheet, 80GB PCIe")),
    PublishedPeak("NVIDIA A100 40GB", ("a100",), 1555.0,
                  {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
                  _sheet("NVIDIA A100 Tensor Core GPU datasheet, 40GB")),
    PublishedPeak("NVIDIA L40S", ("l40s",), 864.0,
                  {"fp32": 91.6, "tf32": 183.0, "fp16": 362.0, "bf16": 362.0},
                  _sheet("NVIDIA L40S datasheet")),
    PublishedPeak("NVIDIA L4", ("l4",), 300.0,
                  {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0},
                  _sheet("NVIDIA L4 Tensor Core GPU datasheet")),
    PublishedPeak("NVIDIA A10", ("a10",), 600.0,
                  {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0},
                  _sheet("NVIDIA A10 Tensor Core GPU datasheet")),
    PublishedPeak("NVIDIA T4", ("t4",), 320.0,
                  {"fp32": 8.1, "fp16": 65.0},
                  _sheet("NVIDIA T4 Tensor Core GPU datasheet; FP16 mixed precision")),
    PublishedPeak("NVIDIA GeForce RTX 4090", ("rtx", "4090"), 1008.0,
                  {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2},
                  _sheet("NVIDIA Ada Lovelace architecture whitepaper, RTX 4090, "
                         "FP32 accumulate")),
)


def published_peak(device_name: str) -> dict[str, Any] | None:
    """Datasheet peaks for a device name such as ``NVIDIA H100 80GB HBM3``, or None."""
    for entry in PUBLISHED:
        if entry.matches(device_name):
            return entry.to_dict()
    return None


# -- roofline ---------------------------------------------------------------


def achieved(bytes_moved: float, flops: float, seconds: float) -> dict[str, float]:
    """GB/s, TFLOP/s and arithmetic intensity (FLOP/byte) of work done in ``seconds``."""
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
    Bytes only (``flops == 0``): achieved GB/s over ``peak_gbs``.
    """
    if peak_gbs <= 0 or peak_tflops <= 0:
        raise ValueError(f"peaks must be > 0, got {peak_gbs!r} GB/s, {peak_tflops!r} TFLOP/s")
    got = achieved(bytes_moved, flops, seconds)
    if flops == 0:
        return got["gbs"] / peak_gbs
    bound_tflops = min(peak_tflops, got["intensity"] * peak_gbs * 1e9 / 1e12)
    return got["tflops"] / bound_tflops


# -- measured peaks ---------------------------------------------------------

CUDA_SIZES = {"copy_mb": 512, "gemm_n": 8192}
CPU_SIZES = {"copy_mb": 64, "gemm_n": 512}


@dataclass
class _Probe:
    """What one measured probe needs: a device string, a way to time, sizes."""

    kind: str
    torch_device: str
    name: str
    time_call: Callable[[Callable[[], Any]], float]
    sizes: dict[str, int] = field(default_factory=dict)


def _device_parts(device: Any) -> tuple[str, str, str]:
    """(kind, torch device string, name) of a :class:`~.devices.Device` or a string."""
    if isinstance(device, str):
        from pytest_hwopt.hardware import devices

        device = devices.resolve(device)
    return device.kind, device.torch_device, device.name


def cache_key(name: str, torch_version: str) -> str:
    return f"{name}|torch {torch_version}"


def cache_path(cache_dir: str | os.PathLike[str], key: str) -> Path:
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"peaks-{digest}.json"


def read_cache(path: Path, key: str) -> dict[str, Any] | None:
    """The cached result for ``key``; None when missing, unreadable or for another key."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    result = data.get("result")
    if not (isinstance(result, dict) and isinstance(result.get("gbs"), (int, float))
            and isinstance(result.get("tflops"), dict)):
        return None
    return result


def write_cache(path: Path, key: str, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "result": result}, indent=1, sort_keys=True))
    os.replace(tmp, path)


def measure_peaks(device: Any = "cpu", *, budget_s: float | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, refresh: bool = False,
                  copy_mb: int | None = None, gemm_n: int | None = None,
                  dtypes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Measured copy bandwidth (GB/s) and GEMM TFLOP/s per dtype on ``device``.

    ``device`` is a :class:`~.devices.Device` or a ``--hwopt-device`` string. The
    copy counts bytes read plus written; a GEMM counts ``2*n**3`` FLOPs; each is
    the best of several repetitions within its share of ``budget_s`` (default 2 s on
    the CPU, 20 s on CUDA). With ``cache_dir`` the result is kept per device name
    and torch version; an unreadable cache file is measured again and replaced.
    """
    import torch

    kind, torch_device, name = _device_parts(device)
    key = cache_key(name, torch.__version__)
    if kind == "cpu":  # a CPU's peaks depend on how many threads do the work
        key += f"|threads {torch.get_num_threads()}"
    path = cache_path(cache_dir, key) if cache_dir is not None else None
    if path is not None and not refresh:
        cached = read_cache(path, key)
        if cached is not None:
            return {**cached, "cached": True}
    sizes = dict(CUDA_SIZES if kind == "cuda" else CPU_SIZES)
    if copy_mb is not None:
        sizes["copy_mb"] = copy_mb
    if gemm_n is not None:
        sizes["gemm_n"] = gemm_n
    if dtypes is None:
        dtypes = ("fp32", "tf32", "fp16", "bf16") if kind == "cuda" else ("fp32", "bf16")
    budget = budget_s if budget_s is not None else (20.0 if kind == "cuda" else 2.0)
    share = budget / (1 + len(dtypes))
    start = time.perf_counter()
    result: dict[str, Any] = {
        "device": name, "kind": kind, "torch": torch.__version__, "sizes": sizes,
        "timer": "cuda events" if kind == "cuda" else "host perf_counter",
        "threads": torch.get_num_threads() if kind == "cpu" else None,
        "gbs": _copy_gbs(torch, kind, torch_device, sizes["copy_mb"], share),
        "tflops": {},
    }
    for dtype in dtypes:
        result["tflops"][dtype] = _gemm_tflops(torch, kind, torch_device, dtype,
                                               sizes["gemm_n"], share)
    result["seconds"] = time.perf_counter() - start
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if path is not None:
        write_cache(path, key, result)
    return {**result, "cached": False}


def _best_seconds(torch: Any, kind: str, fn: Callable[[], Any], share_s: float,
                  min_reps: int = 3, max_reps: int = 50) -> float:
    """Fastest of repeated timed calls of ``fn`` (one untimed call first)."""
    fn()
    if kind == "cuda":
        torch.cuda.synchronize()
    best, reps, spent = math.inf, 0, 0.0
    while reps < min_reps or (spent < share_s and reps < max_reps):
        if kind == "cuda":
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            took = begin.elapsed_time(end) / 1000.0
        else:
            t0 = time.perf_counter()
            fn()
            took = time.perf_counter() - t0
        best = min(best, took)
        spent += max(took, 1e-6)
        reps += 1
    return best


def _copy_gbs(torch: Any, kind: str, torch_device: str, copy_mb: int, share_s: float) -> float:
    n = max(1, copy_mb * 2**20 // 4)
    src = torch.ones(n, dtype=torch.float32, device=torch_device)
    dst = torch.empty_like(src)
    seconds = _best_seconds(torch, kind, lambda: dst.copy_(src), share_s)
    return 2 * src.numel() * src.element_size() / seconds / 1e9


_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _gemm_tflops(torch: Any, kind: str, torch_device: str, dtype: str, n: int,
                 share_s: float) -> float | None:
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
    tdtype = getattr(torch, _DTYPES[dtype])
    try:
        a = torch.randn(n, n, device=torch_device).to(tdtype)
        b = torch.randn(n, n, device=torch_device).to(tdtype)
        out = torch.empty(n, n, device=torch_device, dtype=tdtype)
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
        try:
            seconds = _best_seconds(torch, kind, lambda: torch.mm(a, b, out=out), share_s)
        finally:
            torch.set_float32_matmul_precision(previous)
    except RuntimeError:  # dtype not supported here (e.g. bf16 on an old GPU)
        return None
    return 2.0 * n**3 / seconds / 1e12
