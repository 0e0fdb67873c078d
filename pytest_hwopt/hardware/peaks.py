"""Measured device peaks: copy bandwidth and GEMM TFLOP/s from a short probe, cached per machine.

The probe times a device-to-device copy and one square GEMM per dtype, keeping
the best of several repetitions. Results are cached as JSON, one file per
device name and torch version (and thread count on a CPU). torch is imported
only when something is measured.

The datasheet table lives in :mod:`.datasheets` and the roofline arithmetic in
:mod:`.roofline`; their names are also importable from here, as before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypedDict, cast

from pytest_hwopt.hardware.datasheets import (  # noqa: F401 - the old import path
    DATASHEET,
    PUBLISHED,
    PublishedPeak,
    PublishedPeakRecord,
    published_peak,
)
from pytest_hwopt.hardware.roofline import (  # noqa: F401 - the old import path
    achieved,
    ridge_point,
    roofline_fraction,
)

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device


class MeasuredPeaks(TypedDict, total=False):
    """What :func:`measure_peaks` returns (every key but ``published``) and a device keeps.

    ``gbs`` is copy bandwidth (bytes read plus written, GB/s); ``tflops`` maps a
    dtype to TFLOP/s, None where the device cannot run that dtype. ``published``
    is the datasheet entry, added by the caller where one matches. Empty until
    measured.
    """

    device: str
    kind: str
    torch: str
    sizes: dict[str, int]  # "copy_mb": the copied buffer (MB), "gemm_n": the GEMM's side
    timer: str
    threads: int | None
    gbs: float
    tflops: dict[str, float | None]
    seconds: float
    measured_at: str
    cached: bool
    published: PublishedPeakRecord


CUDA_SIZES = {"copy_mb": 512, "gemm_n": 8192}
CPU_SIZES = {"copy_mb": 64, "gemm_n": 512}
_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _device_parts(device: Device | str) -> tuple[str, str, str]:
    """(kind, torch device string, name) of a :class:`~.devices.Device` or a device string."""
    if isinstance(device, str):
        from pytest_hwopt.hardware import devices

        device = devices.resolve(device)
    return device.kind, device.torch_device, device.name


# -- the cache ----------------------------------------------------------------


def cache_key(name: str, torch_version: str) -> str:
    return f"{name}|torch {torch_version}"


def cache_path(cache_dir: str | os.PathLike[str], key: str) -> Path:
    """``peaks-<hash of key>.json`` in ``cache_dir``."""
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"peaks-{digest}.json"


def read_cache(path: Path, key: str) -> MeasuredPeaks | None:
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
    return cast(MeasuredPeaks, result)


def write_cache(path: Path, key: str, result: MeasuredPeaks) -> None:
    """Write ``result`` under ``key`` to ``path`` atomically (a temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "result": result}, indent=1, sort_keys=True))
    os.replace(tmp, path)


# -- the probe ----------------------------------------------------------------


def measure_peaks(device: Device | str = "cpu", *, budget_s: float | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, refresh: bool = False,
                  copy_mb: int | None = None, gemm_n: int | None = None,
                  dtypes: tuple[str, ...] | None = None) -> MeasuredPeaks:
    """Measured copy bandwidth (GB/s) and GEMM TFLOP/s per dtype on ``device``.

    ``device`` is a :class:`~.devices.Device` or a ``--hwopt-device`` string. The
    copy counts bytes read plus written; a GEMM counts ``2*n**3`` FLOPs; each is
    the best of several repetitions within its share of ``budget_s`` (default 2 s on
    the CPU, 20 s on CUDA). With ``cache_dir`` the result is kept per device name
    and torch version; an unreadable cache file is measured again and replaced.
    ``cached`` in the result says which happened. An unknown dtype raises
    :class:`ValueError`.
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
    tflops: dict[str, float | None] = {}
    result: MeasuredPeaks = {
        "device": name, "kind": kind, "torch": torch.__version__, "sizes": sizes,
        "timer": "cuda events" if kind == "cuda" else "host perf_counter",
        "threads": torch.get_num_threads() if kind == "cpu" else None,
        "gbs": _copy_gbs(torch, kind, torch_device, sizes["copy_mb"], share),
        "tflops": tflops,
    }
    for dtype in dtypes:
        tflops[dtype] = _gemm_tflops(torch, kind, torch_device, dtype, sizes["gemm_n"], share)
    result["seconds"] = time.perf_counter() - start
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if path is not None:
        write_cache(path, key, result)
    return {**result, "cached": False}


# ``torch`` below is the torch module, passed in so that only measure_peaks imports it.


def _best_seconds(torch: ModuleType, kind: str, fn: Callable[[], object], share_s: float,
                  min_reps: int = 3, max_reps: int = 50, torch_device: str = "cpu") -> float:
    """Fastest of repeated timed calls of ``fn`` (one untimed call first), in seconds.

    On CUDA ``torch_device`` (``cuda:N``) is made current, so the events time the
    stream of the GPU the work runs on."""
    if kind == "cuda":
        with torch.cuda.device(torch_device):
            return _fastest(torch, True, fn, share_s, min_reps, max_reps)
    return _fastest(torch, False, fn, share_s, min_reps, max_reps)


def _fastest(torch: ModuleType, cuda: bool, fn: Callable[[], object], share_s: float,
             min_reps: int, max_reps: int) -> float:
    """:func:`_best_seconds` on the current device."""
    kind = "cuda" if cuda else "cpu"
    fn()
    if kind == "cuda":
        torch.cuda.synchronize()
    best, reps, spent = math.inf, 0, 0.0
    while reps < min_reps or (spent < share_s and reps < max_reps):
        took: float
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


def _copy_gbs(torch: ModuleType, kind: str, torch_device: str, copy_mb: int,
              share_s: float) -> float:
    """GB/s of a device-to-device copy of ``copy_mb`` MB (read plus written)."""
    n = max(1, copy_mb * 2**20 // 4)
    src = torch.ones(n, dtype=torch.float32, device=torch_device)
    dst = torch.empty_like(src)
    seconds = _best_seconds(torch, kind, lambda: dst.copy_(src), share_s,
                           torch_device=torch_device)
    return float(2 * src.numel() * src.element_size() / seconds / 1e9)


def _gemm_tflops(torch: ModuleType, kind: str, torch_device: str, dtype: str, n: int,
                 share_s: float) -> float | None:
    """TFLOP/s of an ``n`` x ``n`` GEMM in ``dtype``; None where the dtype does not run here."""
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
            seconds = _best_seconds(torch, kind, lambda: torch.mm(a, b, out=out), share_s,
                                   torch_device=torch_device)
        finally:
            torch.set_float32_matmul_precision(previous)
    except RuntimeError:  # dtype not supported here (e.g. bf16 on an old GPU)
        return None
    return 2.0 * n**3 / seconds / 1e12
