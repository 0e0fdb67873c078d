#!/usr/bin/env python3
"""Exercise every CUDA path of pytest-hwopt on one machine, in under 8 minutes.

    python scripts/gpu_check.py OUTDIR        (or: bash scripts/gpu-check.sh OUTDIR)

Writes OUTDIR/gpu-check.json (everything measured, every check) and
OUTDIR/gpu-check.md (a short summary); the JSON is rewritten after each
section, so a run cut short still leaves what it got. Each section runs in its
own try/except: one failure is recorded and the rest still run. Without a
usable CUDA device the report says "skipped: no CUDA device" and the exit
status is 0; otherwise it is 0 when every check held, else 1.

Installs nothing; needs PyTorch with CUDA, and nvidia-ml-py for the NVML section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
TOTAL_S = 470.0  # 8 minutes, less a margin for start-up and writing the report
SKIPPED = "skipped: no CUDA device"

Section = tuple[str, Callable[[dict[str, Any]], dict[str, Any]], float]


# -- plumbing (no torch) ------------------------------------------------------


def _project_importable() -> None:
    """Make ``pytest_hwopt`` importable from this checkout when it is not installed."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def subprocess_env() -> dict[str, str]:
    """The environment for child Pythons: this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    parts = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def plugin_entry_point() -> bool:
    """Whether pytest loads the plugin by itself (the package is installed)."""
    from importlib.metadata import entry_points

    return any(ep.name == "hwopt" for ep in entry_points(group="pytest11"))


def check(ctx: dict[str, Any], section: str, name: str, ok: bool, detail: str = "") -> bool:
    ctx["checks"].append({"section": section, "check": name, "ok": bool(ok), "detail": detail})
    print(f"[gpu-check]   {'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""),
          flush=True)
    return bool(ok)


def clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings, unknown objects their repr."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def run_sections(sections: list[Section], ctx: dict[str, Any],
                 clock: Callable[[], float] = time.monotonic,
                 after: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run each section in turn; an exception is recorded and the next still runs.

    A section is skipped when less than its minimum time is left before
    ``ctx["deadline"]``. ``after`` runs after each (it rewrites the report).
    """
    results = ctx.setdefault("sections", {})
    for name, fn, min_s in sections:
        left = ctx["deadline"] - clock()
        if left < min_s:
            results[name] = {"status": "skipped",
                             "reason": f"time budget: {left:.0f} s left, needs ~{min_s:.0f} s"}
            print(f"[gpu-check] {name}: skipped ({results[name]['reason']})", flush=True)
            continue
        print(f"[gpu-check] {name} ...", flush=True)
        t0 = clock()
        try:
            results[name] = {"status": "ok", "result": fn(ctx)}
        except Exception as exc:  # noqa: BLE001 - record it, go on with the next section
            results[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=10)}
            check(ctx, name, "section ran without an exception", False,
                  f"{type(exc).__name__}: {exc}")
        results[name]["seconds"] = round(clock() - t0, 3)
        print(f"[gpu-check] {name}: {results[name]['status']} "
              f"({results[name]['seconds']:.1f} s)", flush=True)
        if after is not None:
            after()
    return results


def overall_status(report: dict[str, Any]) -> str:
    if str(report.get("status", "")).startswith("skipped"):
        return str(report["status"])
    failed = [c for c in report.get("checks", []) if not c["ok"]]
    errors = [n for n, s in report.get("sections", {}).items() if s.get("status") == "error"]
    if not failed and not errors:
        return "ok"
    return f"failed: {len(failed)} check(s) failed, {len(errors)} section(s) raised"


def timers_verdict(unsynced_ms: float, synced_ms: float, events_ms: float,
                   tolerance: float = 0.10, launch_fraction: float = 0.2) -> dict[str, Any]:
    """Do synced host timing and CUDA events agree, and is unsynced timing far below both?"""
    gap = abs(synced_ms - events_ms) / events_ms
    return {"synced_vs_events": gap, "agree": gap <= tolerance,
            "unsynced_over_events": unsynced_ms / events_ms,
            "unsynced_small": unsynced_ms <= launch_fraction * events_ms}


def render_markdown(report: dict[str, Any]) -> str:
    """A short summary: status, device, checks, sections and their headline numbers."""
    lines = ["# pytest-hwopt GPU check", "",
             f"**Status:** {report.get('status')}  ",
             f"**When:** {report.get('started', '?')}, {report.get('seconds', 0):.0f} s  "]
    facts = report.get("facts", {})
    for key in ("gpu", "torch", "cuda", "driver", "reason"):
        if facts.get(key) is not None or report.get(key) is not None:
            value = facts.get(key, report.get(key))
            lines.append(f"**{key}:** {value}  ")
    checks = report.get("checks", [])
    if checks:
        lines += ["", "## Checks", "", "| | section | check | detail |", "|---|---|---|---|"]
        for c in checks:
            detail = str(c.get("detail", "")).replace("|", "/").replace("\n", " ")
            lines.append(f"| {'PASS' if c['ok'] else 'FAIL'} | {c['section']} | {c['check']} "
                         f"| {detail} |")
    sections = report.get("sections", {})
    if sections:
        lines += ["", "## Sections", "", "| section | status | s | summary |", "|---|---|---|---|"]
        for name, s in sections.items():
            note = (s.get("result") or {}).get("summary", "") if s.get("status") == "ok" \
                else s.get("error", s.get("reason", ""))
            note = str(note).replace("|", "/").replace("\n", " ")
            lines.append(f"| {name} | {s.get('status')} | {s.get('seconds', '')} | {note} |")
    return "\n".join(lines) + "\n"


def write_report(outdir: Path, report: dict[str, Any]) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    data = clean(report)
    tmp = outdir / "gpu-check.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, outdir / "gpu-check.json")
    (outdir / "gpu-check.md").write_text(render_markdown(data))


def host_facts() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "hostname": platform.node()}


def cuda_or_reason() -> tuple[Any, str | None]:
    """torch if a CUDA device is usable, else (torch or None, why not)."""
    try:
        import torch
    except ImportError as exc:
        return None, f"PyTorch is not installed ({exc})"
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (CPU build)"
        return torch, (f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                       f"CUDA build {build})")
    return torch, None


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000.0


# -- sections (CUDA) ------------------------------------------------------------


def section_facts(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    from pytest_hwopt import __version__
    from pytest_hwopt.hardware import devices

    dev = devices.resolve("cuda")
    ctx["device"] = dev
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", None)
    out = {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "device_count": torch.cuda.device_count(),
        "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "memory_gb": round(props.total_memory / 2**30, 2),
        "multiprocessors": props.multi_processor_count,
        "l2_mb": round(l2 / 2**20, 1) if l2 else None,
        "bf16_native": _bf16_native(torch),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pytest_hwopt": __version__, "device_facts": dev.facts,
    }
    ctx["report"]["facts"].update({k: out[k] for k in ("gpu", "torch", "cuda")})
    out["summary"] = (f"{props.name}, CC {out['compute_capability']}, {out['memory_gb']} GB, "
                      f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"[gpu-check]   {out['summary']}", flush=True)
    return out


def section_timers(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    from pytest_hwopt.core.timing import CudaEventTimer, HostTimer, SyncedHostTimer

    n = 4096
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    c = torch.empty(n, n, device="cuda")

    def fn() -> Any:
        return torch.mm(a, b, out=c)

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    samples = 20
    unsynced = HostTimer().time_samples(fn, 1, samples)
    torch.cuda.synchronize()
    synced = SyncedHostTimer(torch.cuda.synchronize).time_samples(fn, 1, samples)
    events = CudaEventTimer(torch.cuda).time_samples(fn, 1, samples)
    out: dict[str, Any] = {
        "op": f"fp32 matmul {n}x{n}", "samples": samples,
        "unsynced_host_ms": _median_ms(unsynced), "synced_host_ms": _median_ms(synced),
        "cuda_events_ms": _median_ms(events)}
    verdict = timers_verdict(out["unsynced_host_ms"], out["synced_host_ms"],
                             out["cuda_events_ms"])
    out.update(verdict)
    check(ctx, "timers", "SyncedHostTimer and CudaEventTimer agree within 10%",
          verdict["agree"], f"synced {out['synced_host_ms']:.3f} ms vs events "
          f"{out['cuda_events_ms']:.3f} ms ({verdict['synced_vs_events']:.1%} apart)")
    check(ctx, "timers", "unsynchronised host timing is far below the device time",
          verdict["unsynced_small"], f"unsynced {out['unsynced_host_ms']:.4f} ms = "
          f"{verdict['unsynced_over_events']:.1%} of events")
    out["summary"] = (f"unsynced {out['unsynced_host_ms']:.4f} ms, synced "
                      f"{out['synced_host_ms']:.3f} ms, events {out['cuda_events_ms']:.3f} ms")
    return out


def _spacer(torch: Any) -> Callable[[], None]:
    """GPU-side busy wait (~0.1 ms) so the host runs ahead and samples hold no launch gaps."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        return lambda: None
    return lambda: sleep(200_000)


def section_l2_flush(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    from pytest_hwopt.hardware.cudagraph import l2_flusher
    from pytest_hwopt.core.timing import CudaEventTimer

    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 0) or 32 * 2**20
    nbytes = int(min(8 * 2**20, max(2**20, l2 // 4)))  # in and out fit in L2 together
    x = torch.randn(nbytes // 4, device="cuda")
    y = torch.empty_like(x)

    def op() -> Any:
        return torch.mul(x, 2.0, out=y)

    flush = l2_flusher(0, 256)
    spacer = _spacer(torch)

    def cold_between() -> None:
        flush()
        spacer()

    op()
    torch.cuda.synchronize()
    samples = 50
    cold = CudaEventTimer(torch.cuda, between=cold_between).time_samples(op, 1, samples)
    warm = CudaEventTimer(torch.cuda, between=spacer).time_samples(op, 1, samples)
    flush_cost = CudaEventTimer(torch.cuda).time_samples(flush, 1, 5)
    out: dict[str, Any] = {
        "op": f"y = x * 2 on {nbytes / 2**20:.0f} MB", "l2_mb": l2 / 2**20,
        "cold_us": _median_ms(cold) * 1000, "warm_us": _median_ms(warm) * 1000,
        "flush_ms": _median_ms(flush_cost), "gpu_spacer": hasattr(torch.cuda, "_sleep")}
    out["cold_over_warm"] = out["cold_us"] / out["warm_us"]
    check(ctx, "l2_flush", "a flushed L2 makes the small op slower", out["cold_over_warm"] > 1.0,
          f"cold {out['cold_us']:.1f} us vs warm {out['warm_us']:.1f} us "
          f"({out['cold_over_warm']:.2f}x); flush itself {out['flush_ms']:.3f} ms, not timed")
    out["summary"] = (f"cold {out['cold_us']:.1f} us, warm {out['warm_us']:.1f} us "
                      f"({out['cold_over_warm']:.2f}x)")
    return out


def section_cuda_graph(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    from pytest_hwopt import compare
    from pytest_hwopt.hardware.cudagraph import capture
    from pytest_hwopt.core.engine import Engine, EngineConfig
    from pytest_hwopt.core.timing import CudaEventTimer

    layers: list[Any] = []
    for _ in range(12):
        layers += [torch.nn.Linear(256, 256), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).cuda().eval()
    x = torch.randn(8, 256, device="cuda")

    def eager() -> Any:
        with torch.no_grad():
            return model(x)

    graphed = capture(eager, warmup=3)
    same = bool(torch.allclose(graphed().clone(), eager(), rtol=1e-5, atol=1e-6))
    engine = Engine(EngineConfig(max_time_s=2.0), timer=CudaEventTimer(torch.cuda))
    result = compare(eager, graphed, names=("eager", "cuda graph"), engine=engine)
    out = {"model": "12 x (Linear(256,256) + ReLU), batch 8, fp32",
           "outputs_equal": same, "speedup": result.speedup, "low": result.low,
           "high": result.high, "eager_ms": result.baseline.median_ms,
           "graph_ms": result.candidate.median_ms, "text": str(result)}
    check(ctx, "cuda_graph", "graph replay returns the eager output", same)
    check(ctx, "cuda_graph", "graph replay is faster than eager for a launch-bound model",
          result.low > 1.0, str(result))
    out["summary"] = str(result)
    return out


CAPTURE_FAILURE_CODE = """
import torch
from pytest_hwopt.hardware.cudagraph import CaptureError, capture
x = torch.ones(4, device="cuda")
try:
    capture(lambda: x.sum().item())
except CaptureError as exc:
    print("CAPTURE_ERROR:", exc)
else:
    print("NO_ERROR")
"""


def section_capture_failure(ctx: dict[str, Any]) -> dict[str, Any]:
    """A host-syncing fn must raise CaptureError (in a child: a failed capture can taint
    the CUDA context)."""
    proc = subprocess.run([sys.executable, "-c", CAPTURE_FAILURE_CODE], cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    text = (proc.stdout + proc.stderr)[-3000:]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("CAPTURE_ERROR:")), "")
    check(ctx, "capture_failure", "capturing fn that calls .item() raises CaptureError",
          bool(line), line[:300] or text[-300:])
    return {"returncode": proc.returncode, "message": line, "output_tail": text,
            "summary": line[:200] or f"rc {proc.returncode}, no CaptureError"}


def _bf16_native(torch: Any) -> bool:
    """bf16 in hardware (Ampere and later), not emulated."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no including_emulation and never emulates
        return bool(torch.cuda.is_bf16_supported())


def _gemm_operands(torch: Any, n: int) -> tuple[Any, Any, Any, str]:
    dtype = torch.bfloat16 if _bf16_native(torch) else torch.float16
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    return a, b, torch.empty(n, n, device="cuda", dtype=dtype), str(dtype).replace("torch.", "")


def _nvml_probe(ctx: dict[str, Any]) -> Any:
    if "probe" not in ctx:
        from pytest_hwopt.hardware.nvml import NvmlProbe, nvml_index

        ctx["probe"] = NvmlProbe(nvml_index(0))
    return ctx["probe"]


def _idle_window(probe: Any, seconds: float = 0.3) -> dict[str, Any]:
    """What the probe reports over a short window with nothing running."""
    probe.start()
    time.sleep(seconds)
    return probe.stop()  # type: ignore[no-any-return]


def section_nvml(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    probe = _nvml_probe(ctx)
    if not probe.available():
        check(ctx, "nvml", "NVML available", False, str(probe.reason))
        return {"available": False, "reason": probe.reason,
                "summary": f"NVML unavailable: {probe.reason}"}
    facts = probe.facts()
    ctx["report"]["facts"]["driver"] = facts.get("driver")
    n = 8192
    a, b, c, dtype = _gemm_operands(torch, n)
    for _ in range(3):
        torch.mm(a, b, out=c)
    torch.cuda.synchronize()
    idle = _idle_window(probe)
    probe.start()
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < 2.0:
        for _ in range(10):
            torch.mm(a, b, out=c)
            calls += 1
        torch.cuda.synchronize()
    window = probe.stop()
    flops = 2.0 * n**3 * calls
    out = {"facts": facts, "idle_window": idle, "gemm": f"{dtype} {n}^3",
           "calls": calls, "window": window,
           "tflops": flops / window["seconds"] / 1e12,
           "energy_per_call_mj": (window["energy_mj"] / calls
                                  if window.get("energy_mj") is not None else None)}
    check(ctx, "nvml", "NVML available", True, f"driver {facts.get('driver')}")
    check(ctx, "nvml", "sampler thread sampled every ~20 ms over the 2 s window",
          window["samples"] >= 20, f"{window['samples']} samples in {window['seconds']:.2f} s")
    check(ctx, "nvml", "energy counter advanced during the GEMM loop",
          bool(window.get("energy_mj")), f"{window.get('energy_mj')} mJ, "
          f"{window.get('mean_power_w')} W mean")
    reasons = ", ".join(window["reasons"]) or "none"
    out["summary"] = (f"{out['tflops']:.0f} TFLOP/s, {window.get('mean_power_w') or 0:.0f} W, "
                      f"{out['energy_per_call_mj'] or 0:.1f} mJ/call, max "
                      f"{window['max_temperature_c']} C, SM {window['min_sm_clock_mhz']}-"
                      f"{window['max_sm_clock_mhz']} MHz, reasons: {reasons}")
    return out


def section_peaks(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    from pytest_hwopt.hardware import peaks
    from pytest_hwopt.core.timing import CudaEventTimer

    dev = ctx["device"]
    cache = ctx["outdir"] / "peaks-cache"
    measured = peaks.measure_peaks(dev, budget_s=25.0, cache_dir=cache, refresh=True)
    again = peaks.measure_peaks(dev, cache_dir=cache)
    check(ctx, "peaks", "second measure_peaks call is served from the cache",
          again["cached"] and again["gbs"] == measured["gbs"], f"cached={again['cached']}")
    published = peaks.published_peak(dev.name)
    out: dict[str, Any] = {"measured": measured, "published": published}
    if published is None:
        check(ctx, "peaks", "device is in the published table", False, dev.name)
        out["summary"] = (f"measured {measured['gbs']:.0f} GB/s, {measured['tflops']}; "
                          "no table entry")
        return out
    ratios = {"gbs": measured["gbs"] / published["gbs"]}
    for dtype, value in measured["tflops"].items():
        if value is not None and dtype in published["tflops"]:
            ratios[dtype] = value / published["tflops"][dtype]
    out["measured_over_published"] = ratios
    check(ctx, "peaks", "copy bandwidth is 50-105% of the datasheet figure",
          0.5 <= ratios["gbs"] <= 1.05, f"{measured['gbs']:.0f} of {published['gbs']:.0f} GB/s")
    half = "bf16" if "bf16" in ratios else "fp16"
    if half in ratios:
        check(ctx, "peaks", f"{half} GEMM is 30-105% of the datasheet figure",
              0.3 <= ratios[half] <= 1.05,
              f"{measured['tflops'][half]:.0f} of {published['tflops'][half]:.0f} TFLOP/s")
    # roofline of a memory-bound op, against measured and published peaks
    x = torch.randn(256 * 2**20, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    seconds = min(CudaEventTimer(torch.cuda).time_samples(
        lambda: torch.mul(x, 2.0, out=y), 1, 10))
    nbytes, flops = 2 * x.numel() * 4, x.numel()
    half_peak = published["tflops"].get(half) or max(published["tflops"].values())
    out["roofline"] = {
        "op": "y = x * 2 on 1 GiB fp32", "achieved": peaks.achieved(nbytes, flops, seconds),
        "fraction_of_measured": peaks.roofline_fraction(
            nbytes, flops, seconds, measured["gbs"], measured["tflops"].get("fp32") or 1.0),
        "fraction_of_published": peaks.roofline_fraction(
            nbytes, flops, seconds, published["gbs"], published["tflops"]["fp32"]),
        "ridge_point_published": peaks.ridge_point(published["gbs"], half_peak),
    }
    frac = out["roofline"]["fraction_of_measured"]
    check(ctx, "peaks", "elementwise op reaches >= 60% of measured copy roofline",
          frac >= 0.6, f"{frac:.0%} (published: {out['roofline']['fraction_of_published']:.0%})")
    out["summary"] = ("measured/published: " + ", ".join(f"{k} {v:.0%}"
                                                         for k, v in ratios.items()))
    return out


def section_memory(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    from pytest_hwopt.hardware.devices import CudaPeak

    probe = _nvml_probe(ctx)
    nvml = probe.available()

    def snap() -> dict[str, Any]:
        torch.cuda.synchronize()
        facts = probe.facts() if nvml else {}
        return {"allocated_mb": torch.cuda.memory_allocated() / 2**20,
                "reserved_mb": torch.cuda.memory_reserved() / 2**20,
                "max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
                "nvml_process_mb": probe.process_memory_mb() if nvml else None,
                "nvml_device_used_mb": facts.get("memory_used_mb")}

    size_mb = 2048
    torch.cuda.empty_cache()  # so the allocation is new device memory, not a cached block
    before = snap()
    big = torch.empty(size_mb * 2**20, dtype=torch.uint8, device="cuda")
    big.fill_(1)
    during = snap()
    processes = probe.compute_processes() if nvml else []
    del big
    after_free = snap()
    torch.cuda.empty_cache()
    after_empty = snap()
    peak_mb = CudaPeak(0).measure(lambda: torch.ones(64 * 2**20, device="cuda"))  # 256 MB
    out = {"size_mb": size_mb, "before": before, "during": during, "after_free": after_free,
           "after_empty_cache": after_empty, "compute_processes": processes,
           "pid": os.getpid(), "cuda_peak_256mb": peak_mb}
    grew = during["allocated_mb"] - before["allocated_mb"]
    check(ctx, "memory", "torch memory_allocated grows by the allocation",
          abs(grew - size_mb) < 1.0, f"+{grew:.1f} MB")
    check(ctx, "memory", "memory_reserved drops after free + empty_cache",
          after_empty["reserved_mb"] <= during["reserved_mb"] - size_mb + 1.0,
          f"{during['reserved_mb']:.0f} -> {after_empty['reserved_mb']:.0f} MB")
    check(ctx, "memory", "CudaPeak sees a 256 MB allocation", 255.0 <= peak_mb <= 260.0,
          f"{peak_mb:.1f} MB")
    if nvml and during["nvml_device_used_mb"] is not None:
        dev_grew = during["nvml_device_used_mb"] - before["nvml_device_used_mb"]
        check(ctx, "memory", "NVML device memory used grows by the allocation",
              dev_grew >= size_mb * 0.95, f"+{dev_grew:.0f} MB")
    visible = during["nvml_process_mb"] is not None
    out["nvml_process_visible"] = visible
    out["summary"] = (f"allocated +{grew:.0f} MB, NVML per-process "
                      + (f"{during['nvml_process_mb']:.0f} MB" if visible
                         else "not visible (PID namespace?)")
                      + f", {len(processes)} compute process(es)")
    return out


def section_engine(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = ctx["torch"]
    from pytest_hwopt import compare, measure
    from pytest_hwopt.core.engine import Engine, EngineConfig

    dev = ctx["device"]
    n = 4096
    a32 = torch.randn(n, n, device="cuda")
    b32 = torch.randn(n, n, device="cuda")
    a16, b16, _, dtype = _gemm_operands(torch, n)

    def fp32() -> Any:
        return torch.mm(a32, b32)

    def half() -> Any:
        return torch.mm(a16, b16)

    config = EngineConfig(max_time_s=3.0)
    engine = Engine(config, timer=dev.timer(), memory=dev.memory())
    result = compare(fp32, half, names=("fp32", dtype), min_speedup=2.0, engine=engine)
    single = measure(half, name=dtype, engine=Engine(config, timer=dev.timer()))
    naive = compare(fp32, half, names=("fp32", dtype), config=EngineConfig(max_time_s=0.5))
    torch.cuda.synchronize()
    check_ = result.check
    out = {"device_timer": dev.timer().name, "comparison": str(result),
           "speedup": result.speedup, "low": result.low, "high": result.high,
           "check": check_.to_dict() if check_ is not None else None,
           "baseline": result.baseline.to_dict(), "candidate": result.candidate.to_dict(),
           "measure_median_ms": single.median_ms,
           "default_timer_comparison": str(naive),
           "default_timer_median_ms": {"fp32": naive.baseline.median_ms,
                                       dtype: naive.candidate.median_ms},
           "note": "compare() without an engine uses the host timer, which on CUDA callables "
                   "times the kernel launch only"}
    check(ctx, "engine", f"compare(fp32, {dtype}, min_speedup=2) passes with the device timer",
          bool(check_ is not None and check_.passed), str(result))
    check(ctx, "engine", "measure() on the device timer agrees with compare()",
          abs(single.median_ms - result.candidate.median_ms) / result.candidate.median_ms < 0.2,
          f"{single.median_ms:.3f} vs {result.candidate.median_ms:.3f} ms")
    out["summary"] = f"{result} [default host timer: {naive}]"
    return out


def section_suites(ctx: dict[str, Any]) -> dict[str, Any]:
    suites = ROOT / "suites"
    if not suites.is_dir():
        return {"ran": False, "summary": "no suites/ folder"}
    left = ctx["deadline"] - time.monotonic() - 5.0
    cmd = [sys.executable, "-m", "pytest", "suites", "--hwopt-device=cuda",
           "--hwopt-json", str(ctx["outdir"] / "suites.json"), "-q", "-p", "no:cacheprovider"]
    if not plugin_entry_point():
        cmd[3:3] = ["-p", "pytest_hwopt.plugin"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True,
                              text=True, timeout=left)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-3000:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        check(ctx, "suites", "suites finished within the time budget", False,
              f"killed after {left:.0f} s")
        return {"ran": True, "timed_out": True, "command": cmd, "output_tail": text,
                "summary": f"timed out after {left:.0f} s"}
    text = (proc.stdout + proc.stderr)[-6000:]
    last = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.strip()), "")
    check(ctx, "suites", "pytest suites exit 0 (or 5: nothing collected)",
          proc.returncode in (0, 5), f"rc {proc.returncode}: {last}")
    return {"ran": True, "command": cmd, "returncode": proc.returncode, "output_tail": text,
            "json": str(ctx["outdir"] / "suites.json"), "summary": f"rc {proc.returncode}: {last}"}


SECTIONS: list[Section] = [
    ("facts", section_facts, 5.0),
    ("timers", section_timers, 10.0),
    ("l2_flush", section_l2_flush, 10.0),
    ("cuda_graph", section_cuda_graph, 20.0),
    ("nvml", section_nvml, 10.0),
    ("peaks", section_peaks, 40.0),
    ("memory", section_memory, 10.0),
    ("engine", section_engine, 30.0),
    ("capture_failure", section_capture_failure, 60.0),
    ("suites", section_suites, 30.0),
]


# -- entry point ------------------------------------------------------------------


def run(outdir: Path, budget_s: float = TOTAL_S,
        sections: list[Section] | None = None) -> dict[str, Any]:
    """Run the check and write the report; returns the report."""
    _project_importable()
    start = time.monotonic()
    report: dict[str, Any] = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "budget_s": budget_s, "facts": host_facts(), "checks": [],
                              "sections": {}}
    torch, why_not = cuda_or_reason()
    if torch is not None:
        report["facts"]["torch"] = torch.__version__
        report["facts"]["cuda"] = torch.version.cuda
    if why_not is not None:
        report.update(status=SKIPPED, reason=why_not, seconds=time.monotonic() - start)
        write_report(outdir, report)
        return report
    ctx: dict[str, Any] = {"torch": torch, "outdir": outdir, "report": report,
                           "checks": report["checks"], "sections": report["sections"],
                           "deadline": start + budget_s}

    def save() -> None:
        report["seconds"] = time.monotonic() - start
        write_report(outdir, report)

    save()
    run_sections(SECTIONS if sections is None else sections, ctx, after=save)
    probe = ctx.get("probe")
    if probe is not None:
        probe.close()
    report["status"] = overall_status(report)
    save()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="where gpu-check.json and gpu-check.md go")
    parser.add_argument("--budget-s", type=float, default=TOTAL_S,
                        help=f"wall-clock budget in seconds (default {TOTAL_S:.0f})")
    args = parser.parse_args(argv)
    report = run(args.outdir, args.budget_s)
    print(f"[gpu-check] status: {report['status']} -> {args.outdir / 'gpu-check.json'}",
          flush=True)
    if report["status"] == "ok" or str(report["status"]).startswith("skipped"):
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
