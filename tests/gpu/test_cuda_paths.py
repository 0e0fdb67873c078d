"""Every CUDA path of pytest-hwopt, one test (one section of the GPU check) per path.

Each test skips with what was found where there is no usable CUDA device (or the optional
library it needs); on a GPU it records its figures and checks with ``gpu_record``.
``bash scripts/gpu-check.sh OUTDIR`` runs them with a time budget and writes the summary.
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from gpu_check import (
    ROOT,
    Section,
    child_checks,
    child_session,
    cold_plan_verdict,
    default_stream_warnings,
    nvml_match_verdict,
    outputs_verdict,
    plugin_entry_point,
    power_verdict,
    provider_verdict,
    stream_cases,
    subprocess_env,
    timers_verdict,
)

from pytest_hwopt.hardware.devices import Device
from pytest_hwopt.hardware.nvml import NvmlProbe, NvmlWindow


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000.0


def _bf16_native(torch: ModuleType) -> bool:
    """bf16 in hardware (Ampere and later), not emulated."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no including_emulation and never emulates
        return bool(torch.cuda.is_bf16_supported())


def _gemm_operands(torch: ModuleType, n: int) -> tuple[Any, Any, Any, str]:
    dtype = torch.bfloat16 if _bf16_native(torch) else torch.float16
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    return a, b, torch.empty(n, n, device="cuda", dtype=dtype), str(dtype).replace("torch.", "")


def _spacer(torch: ModuleType) -> Callable[[], None]:
    """GPU-side busy wait (~0.1 ms) so the host runs ahead and samples hold no launch gaps."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        return lambda: None
    return lambda: sleep(200_000)


@pytest.mark.gpu_check(min_s=5.0)
def test_facts(gpu_record: Section, cuda: ModuleType, cuda_device: Device) -> None:
    from pytest_hwopt import __version__

    torch = cuda
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", None)
    figures: dict[str, Any] = {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "device_count": torch.cuda.device_count(),
        "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "memory_gb": round(props.total_memory / 2**30, 2),
        "multiprocessors": props.multi_processor_count,
        "l2_mb": round(l2 / 2**20, 1) if l2 else None,
        "bf16_native": _bf16_native(torch),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pytest_hwopt": __version__, "device_facts": cuda_device.facts,
    }
    gpu_record.fact(gpu=props.name, torch=torch.__version__, cuda=torch.version.cuda)
    gpu_record(**figures, summary=(
        f"{props.name}, CC {figures['compute_capability']}, {figures['memory_gb']} GB, "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}"))


@pytest.mark.gpu_check(min_s=10.0)
def test_timers(gpu_record: Section, cuda: ModuleType) -> None:
    """Synchronised host timing and CUDA events agree; unsynchronised timing sees launches."""
    from pytest_hwopt.core.timing import CudaEventTimer, HostTimer, SyncedHostTimer

    torch = cuda
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
    unsynced_ms, synced_ms, events_ms = _median_ms(unsynced), _median_ms(synced), \
        _median_ms(events)
    verdict = timers_verdict(unsynced_ms, synced_ms, events_ms)
    gpu_record(op=f"fp32 matmul {n}x{n}", samples=samples, unsynced_host_ms=unsynced_ms,
               synced_host_ms=synced_ms, cuda_events_ms=events_ms, **verdict)
    gpu_record.check("SyncedHostTimer and CudaEventTimer agree within 10%", verdict["agree"],
                     f"synced {synced_ms:.3f} ms vs events {events_ms:.3f} ms "
                     f"({verdict['synced_vs_events']:.1%} apart)")
    gpu_record.check("unsynchronised host timing is far below the device time",
                     verdict["unsynced_small"], f"unsynced {unsynced_ms:.4f} ms = "
                     f"{verdict['unsynced_over_events']:.1%} of events")
    gpu_record(summary=f"unsynced {unsynced_ms:.4f} ms, synced {synced_ms:.3f} ms, "
                       f"events {events_ms:.3f} ms")


@pytest.mark.gpu_check(min_s=10.0)
def test_l2_flush(gpu_record: Section, cuda: ModuleType) -> None:
    """A flushed L2 (the cold cache) makes a small op that fits in L2 slower."""
    from pytest_hwopt.core.timing import CudaEventTimer
    from pytest_hwopt.hardware.cudagraph import l2_flusher

    torch = cuda
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
    cold_us, warm_us = _median_ms(cold) * 1000, _median_ms(warm) * 1000
    flush_ms, ratio = _median_ms(flush_cost), cold_us / warm_us
    gpu_record(op=f"y = x * 2 on {nbytes / 2**20:.0f} MB", l2_mb=l2 / 2**20, cold_us=cold_us,
               warm_us=warm_us, flush_ms=flush_ms, gpu_spacer=hasattr(torch.cuda, "_sleep"),
               cold_over_warm=ratio)
    gpu_record.check("a flushed L2 makes the small op slower", ratio > 1.0,
                     f"cold {cold_us:.1f} us vs warm {warm_us:.1f} us ({ratio:.2f}x); "
                     f"flush itself {flush_ms:.3f} ms, not timed")
    gpu_record(summary=f"cold {cold_us:.1f} us, warm {warm_us:.1f} us ({ratio:.2f}x)")


@pytest.mark.gpu_check(min_s=20.0)
def test_cuda_graph(gpu_record: Section, cuda: ModuleType) -> None:
    """Graph capture and replay: the eager output, and faster for a launch-bound model."""
    from pytest_hwopt import compare
    from pytest_hwopt.core.engine import Engine, EngineConfig
    from pytest_hwopt.core.timing import CudaEventTimer
    from pytest_hwopt.hardware.cudagraph import capture

    torch = cuda
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
    gpu_record(model="12 x (Linear(256,256) + ReLU), batch 8, fp32", outputs_equal=same,
               speedup=result.speedup, low=result.low, high=result.high,
               eager_ms=result.baseline.median_ms, graph_ms=result.candidate.median_ms,
               text=str(result), summary=str(result))
    gpu_record.check("graph replay returns the eager output", same)
    gpu_record.check("graph replay is faster than eager for a launch-bound model",
                     result.low > 1.0, str(result))


def _idle_window(probe: NvmlProbe, seconds: float = 0.3) -> NvmlWindow:
    """What the probe reports over a short window with nothing running."""
    probe.start()
    time.sleep(seconds)
    return probe.stop()


@pytest.mark.gpu_check(min_s=10.0)
def test_nvml(gpu_record: Section, cuda: ModuleType, nvml_probe: NvmlProbe) -> None:
    """NVML telemetry over a 2 s GEMM loop: samples, energy, clocks, reasons."""
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install "
                                         "nvidia-ml-py): the NVML section needs it")
    torch, probe = cuda, nvml_probe
    if not probe.available():
        gpu_record.check("NVML available", False, str(probe.reason))
        gpu_record(available=False, reason=probe.reason,
                   summary=f"NVML unavailable: {probe.reason}")
        return
    facts = probe.facts()
    gpu_record.fact(driver=facts.get("driver"))
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
    tflops = 2.0 * n**3 * calls / window["seconds"] / 1e12
    energy_mj = window.get("energy_mj")
    per_call = energy_mj / calls if energy_mj is not None else None
    gpu_record(facts=facts, idle_window=idle, gemm=f"{dtype} {n}^3", calls=calls,
               window=window, tflops=tflops, energy_per_call_mj=per_call)
    gpu_record.check("NVML available", True, f"driver {facts.get('driver')}")
    gpu_record.check("sampler thread sampled every ~20 ms over the 2 s window",
                     window["samples"] >= 20,
                     f"{window['samples']} samples in {window['seconds']:.2f} s")
    gpu_record.check("energy counter advanced during the GEMM loop",
                     bool(window.get("energy_mj")),
                     f"{window.get('energy_mj')} mJ, {window.get('mean_power_w')} W mean")
    reasons = ", ".join(window["reasons"]) or "none"
    gpu_record(summary=f"{tflops:.0f} TFLOP/s, {window.get('mean_power_w') or 0:.0f} W, "
                       f"{per_call or 0:.1f} mJ/call, max {window['max_temperature_c']} C, "
                       f"SM {window['min_sm_clock_mhz']}-{window['max_sm_clock_mhz']} MHz, "
                       f"reasons: {reasons}")


@pytest.mark.gpu_check(min_s=40.0)
def test_peaks(gpu_record: Section, cuda: ModuleType, cuda_device: Device,
               gpu_out: Path) -> None:
    """Measured peaks (cached), against the datasheet; an elementwise op on the roofline."""
    from pytest_hwopt.core.timing import CudaEventTimer
    from pytest_hwopt.hardware import datasheets, peaks, roofline

    torch, dev = cuda, cuda_device
    cache = gpu_out / "peaks-cache"
    measured = peaks.measure_peaks(dev, budget_s=25.0, cache_dir=cache, refresh=True)
    again = peaks.measure_peaks(dev, cache_dir=cache)
    gpu_record.check("second measure_peaks call is served from the cache",
                     again["cached"] and again["gbs"] == measured["gbs"],
                     f"cached={again['cached']}")
    published = datasheets.published_peak(dev.name)
    gpu_record(measured=measured, published=published)
    if published is None:
        gpu_record.check("device is in the published table", False, dev.name)
        gpu_record(summary=f"measured {measured['gbs']:.0f} GB/s, {measured['tflops']}; "
                           "no table entry")
        return
    ratios = {"gbs": measured["gbs"] / published["gbs"]}
    for dtype, value in measured["tflops"].items():
        if value is not None and dtype in published["tflops"]:
            ratios[dtype] = value / published["tflops"][dtype]
    gpu_record(measured_over_published=ratios)
    gpu_record.check("copy bandwidth is 50-105% of the datasheet figure",
                     0.5 <= ratios["gbs"] <= 1.05,
                     f"{measured['gbs']:.0f} of {published['gbs']:.0f} GB/s")
    half = "bf16" if "bf16" in ratios else "fp16"
    if half in ratios:
        gpu_record.check(f"{half} GEMM is 30-105% of the datasheet figure",
                         0.3 <= ratios[half] <= 1.05,
                         f"{measured['tflops'][half]:.0f} of "
                         f"{published['tflops'][half]:.0f} TFLOP/s")
    # roofline of a memory-bound op, against measured and published peaks
    x = torch.randn(256 * 2**20, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    seconds = min(CudaEventTimer(torch.cuda).time_samples(
        lambda: torch.mul(x, 2.0, out=y), 1, 10))
    nbytes, flops = 2 * x.numel() * 4, x.numel()
    half_peak = published["tflops"].get(half) or max(published["tflops"].values())
    frac = roofline.roofline_fraction(nbytes, flops, seconds, measured["gbs"],
                                      measured["tflops"].get("fp32") or 1.0)
    frac_published = roofline.roofline_fraction(nbytes, flops, seconds, published["gbs"],
                                                published["tflops"]["fp32"])
    gpu_record(roofline={
        "op": "y = x * 2 on 1 GiB fp32", "achieved": roofline.achieved(nbytes, flops, seconds),
        "fraction_of_measured": frac, "fraction_of_published": frac_published,
        "ridge_point_published": roofline.ridge_point(published["gbs"], half_peak)})
    gpu_record.check("elementwise op reaches >= 60% of measured copy roofline", frac >= 0.6,
                     f"{frac:.0%} (published: {frac_published:.0%})")
    gpu_record(summary="measured/published: " + ", ".join(f"{k} {v:.0%}"
                                                          for k, v in ratios.items()))


@pytest.mark.gpu_check(min_s=10.0)
def test_memory(gpu_record: Section, cuda: ModuleType, nvml_probe: NvmlProbe) -> None:
    """torch's allocator figures, CudaPeak, and NVML's device and per-process memory."""
    from pytest_hwopt.hardware.memory import CudaPeak

    torch, probe = cuda, nvml_probe
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
    gpu_record(size_mb=size_mb, before=before, during=during, after_free=after_free,
               after_empty_cache=after_empty, compute_processes=processes, pid=os.getpid(),
               cuda_peak_256mb=peak_mb)
    grew = during["allocated_mb"] - before["allocated_mb"]
    gpu_record.check("torch memory_allocated grows by the allocation",
                     abs(grew - size_mb) < 1.0, f"+{grew:.1f} MB")
    gpu_record.check("memory_reserved drops after free + empty_cache",
                     after_empty["reserved_mb"] <= during["reserved_mb"] - size_mb + 1.0,
                     f"{during['reserved_mb']:.0f} -> {after_empty['reserved_mb']:.0f} MB")
    gpu_record.check("CudaPeak sees a 256 MB allocation", 255.0 <= (peak_mb or 0.0) <= 260.0,
                     f"{peak_mb:.1f} MB" if peak_mb is not None else "no figure")
    if nvml and during["nvml_device_used_mb"] is not None:
        dev_grew = during["nvml_device_used_mb"] - before["nvml_device_used_mb"]
        gpu_record.check("NVML device memory used grows by the allocation",
                         dev_grew >= size_mb * 0.95, f"+{dev_grew:.0f} MB")
    visible = during["nvml_process_mb"] is not None
    gpu_record(nvml_process_visible=visible, summary=(
        f"allocated +{grew:.0f} MB, NVML per-process "
        + (f"{during['nvml_process_mb']:.0f} MB" if visible else "not visible (PID namespace?)")
        + f", {len(processes)} compute process(es)"))


@pytest.mark.gpu_check(min_s=30.0)
def test_engine(gpu_record: Section, cuda: ModuleType, cuda_device: Device) -> None:
    """compare() and measure() on the device's timer and memory probe."""
    from pytest_hwopt import compare, measure
    from pytest_hwopt.core.engine import Engine, EngineConfig

    torch, dev = cuda, cuda_device
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
    check = result.check
    gpu_record(device_timer=dev.timer().name, comparison=str(result), speedup=result.speedup,
               low=result.low, high=result.high,
               check=check.to_dict() if check is not None else None,
               baseline=result.baseline.to_dict(), candidate=result.candidate.to_dict(),
               measure_median_ms=single.median_ms, default_timer_comparison=str(naive),
               default_timer_median_ms={"fp32": naive.baseline.median_ms,
                                        dtype: naive.candidate.median_ms},
               note="compare() without an engine uses the host timer, which on CUDA "
                    "callables times the kernel launch only",
               summary=f"{result} [default host timer: {naive}]")
    gpu_record.check(f"compare(fp32, {dtype}, min_speedup=2) passes with the device timer",
                     bool(check is not None and check.passed), str(result))
    gpu_record.check("measure() on the device timer agrees with compare()",
                     abs(single.median_ms - result.candidate.median_ms)
                     / result.candidate.median_ms < 0.2,
                     f"{single.median_ms:.3f} vs {result.candidate.median_ms:.3f} ms")


@pytest.mark.gpu_check(min_s=15.0)
def test_timer_streams(gpu_record: Section, cuda: ModuleType) -> None:
    """CUDA events against synchronised host timing on the default stream, on a dedicated
    stream, and on cuda:1 where there is one (events on the device the work runs on)."""
    from pytest_hwopt.core.timing import CudaEventTimer, SyncedHostTimer

    torch = cuda
    n, samples = 4096, 20
    summary = []
    for label, index, dedicated in stream_cases(torch.cuda.device_count()):
        device = f"cuda:{index}"
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        c = torch.empty(n, n, device=device)
        stream = torch.cuda.Stream(device=index) if dedicated else None

        def fn(a: Any = a, b: Any = b, c: Any = c) -> Any:
            return torch.mm(a, b, out=c)

        def host(fn: Any = fn, index: int = index, stream: Any = stream) -> list[float]:
            timer = SyncedHostTimer(lambda: torch.cuda.synchronize(index))
            with torch.cuda.device(index), torch.cuda.stream(stream):
                for _ in range(3):
                    fn()
                return timer.time_samples(fn, 1, samples)

        synced = host()
        events = CudaEventTimer(torch.cuda, device=index, stream=stream).time_samples(
            fn, 1, samples)
        synced_ms, events_ms = _median_ms(synced), _median_ms(events)
        verdict = timers_verdict(synced_ms, synced_ms, events_ms)
        gpu_record(**{label: {"synced_host_ms": synced_ms, "cuda_events_ms": events_ms,
                              "apart": verdict["synced_vs_events"]}})
        gpu_record.check(f"{label}: CUDA events agree with synchronised host timing "
                         "within 10%", verdict["agree"],
                         f"synced {synced_ms:.3f} ms vs events {events_ms:.3f} ms")
        summary.append(f"{label} {events_ms:.3f}/{synced_ms:.3f} ms")
    if torch.cuda.device_count() < 2:
        gpu_record(cuda_1="not checked: one GPU")
    gpu_record(summary="events/synced: " + ", ".join(summary))


@pytest.mark.gpu_check(min_s=20.0)
def test_cold_cache(gpu_record: Section, cuda: ModuleType, cuda_device: Device) -> None:
    """--hwopt-cache=cold's timer: one call per flushed sample, on the device's timer."""
    from pytest_hwopt.core.engine import Engine, EngineConfig, Variant

    torch = cuda
    x = torch.randn(2**20, device="cuda")
    y = torch.empty_like(x)

    def op() -> Any:
        return torch.mul(x, 2.0, out=y)

    config = EngineConfig(max_time_s=1.0, min_rounds=5)
    results = {}
    for cold in (True, False):
        engine = Engine(config, timer=cuda_device.timer(cold_cache=cold))
        results[cold] = engine.run([Variant("op", op)]).measurements["op"]
    ok, detail = cold_plan_verdict(results[True].calls_per_sample,
                                   results[False].calls_per_sample)
    gpu_record(cold_ms=results[True].median_ms, warm_ms=results[False].median_ms,
               cold_calls_per_sample=results[True].calls_per_sample,
               warm_calls_per_sample=results[False].calls_per_sample,
               summary=f"{detail}; cold {results[True].median_ms * 1000:.1f} us, "
                       f"warm {results[False].median_ms * 1000:.1f} us per call")
    gpu_record.check("a cold cache times one call per flushed sample", ok, detail)


COMPILE_TEST = '''
import torch


def test_compiled(hwopt_bench):
    layers = []
    for _ in range(6):
        layers += [torch.nn.Linear(256, 256), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    hwopt_bench.model(model, (torch.randn(8, 256),), backend="torch-compile")
'''


@pytest.mark.gpu_check(min_s=90.0)
def test_compile_reduce_overhead(gpu_record: Section, cuda_torch: ModuleType, tmp_path: Path,
                                 gpu_time_left: Callable[[], float | None]) -> None:
    """torch.compile with reduce-overhead (CUDA graph trees) through the model path, in a
    child session: the accuracy gate and the after-timing check pass."""
    from pytest_hwopt.backends.torch_backends import CompileBackend
    from pytest_hwopt.hardware.devices import resolve

    why = CompileBackend().unavailable_reason(resolve("cuda"))
    if why:
        pytest.skip(f"torch {cuda_torch.__version__}: {why}")
    left = gpu_time_left()
    rc, report, tail = child_session(COMPILE_TEST, tmp_path / "compile", [
        "--hwopt-device=cuda", "--hwopt-max-time=2", "--hwopt-report-only"],
        timeout=None if left is None else max(30.0, left - 10.0))
    results = {r["variant"]: r for r in report.get("results", [])}
    extra = results.get("torch-compile") or {}  # a result holds its backend's facts
    gpu_record(returncode=rc, output_tail=tail, compile_mode=extra.get("compile_mode"),
               cuda_graphs=extra.get("cuda_graphs"), checks=report.get("checks"))
    gpu_record.check("the child session passed", rc == 0, f"rc {rc}: {tail[-300:]}")
    gpu_record.check("torch-compile ran in reduce-overhead mode with CUDA graphs",
                     extra.get("compile_mode") == "reduce-overhead"
                     and extra.get("cuda_graphs") is True, str(extra.get("compile_mode")))
    accuracy = [c for c in child_checks(report) if c[0].startswith("accuracy")]
    gpu_record.check("an accuracy check ran", bool(accuracy), str(report.get("checks")))
    for name, held, detail in accuracy:
        gpu_record.check(f"{name} passes (before and after timing)", held, detail)
    gpu_record(summary=f"rc {rc}; " + "; ".join(f"{n}: {d}" for n, _, d in accuracy))


def _small_model(torch: ModuleType) -> Any:
    layers: list[Any] = []
    for _ in range(4):
        layers += [torch.nn.Linear(512, 512), torch.nn.GELU()]
    return torch.nn.Sequential(*layers).cuda().eval()


@pytest.mark.gpu_check(min_s=120.0)
def test_tensorrt(gpu_record: Section, cuda: ModuleType, cuda_device: Device,
                  tmp_path: Path) -> None:
    """Native TensorRT fp32 and fp16 engines: outputs match eager, no default-stream
    warning while timed, the context's memory seen by the memory probe."""
    from pytest_hwopt.backends.cache import ArtifactCache
    from pytest_hwopt.backends.tensorrt import TensorRTBackend, strongly_typed, trt_import
    from pytest_hwopt.core.timing import CudaEventTimer
    from pytest_hwopt.hardware.memory import CudaPeak

    torch = cuda
    trt, why = trt_import()
    if trt is None:
        pytest.skip(f"TensorRT unavailable: {why}")
    pytest.importorskip("onnx", reason=f"tensorrt {trt.__version__}: onnx is not installed "
                                       "(the export needs it)")
    version = str(trt.__version__)
    gpu_record.fact(tensorrt=version)
    typing = "strongly typed" if strongly_typed(trt) else "weakly typed"
    model = _small_model(torch)
    x = torch.randn(16, 512, device="cuda")
    with torch.inference_mode():
        expected = model(x)
    summary = []
    for precision, atol, rtol in (("fp32", 1e-3, 1e-3), ("fp16", 2e-2, 2e-2)):
        backend = TensorRTBackend(ArtifactCache(tmp_path / "cache"))
        run = backend.prepare(model, (x,), cuda_device, precision)
        (out,) = run(x)
        torch.cuda.synchronize()
        diff = float((out.float() - expected).abs().max())
        ok, detail = outputs_verdict(diff, float(expected.abs().max()), atol, rtol)
        gpu_record.check(f"TensorRT {precision} ({typing}) matches eager", ok, detail)
        call = functools.partial(run, x)
        samples = CudaEventTimer(torch.cuda, device=0).time_samples(call, 1, 50)
        messages = backend.runtime_messages()
        warned = default_stream_warnings(messages.warnings if messages else [])
        gpu_record.check(f"TensorRT {precision}: no default-stream warning while timed",
                         not warned, "; ".join(warned)[:300] or "none")
        probe = CudaPeak(0)
        probe.measure(call)
        outside = probe.details.get("outside_torch_mb")
        gpu_record.check(f"TensorRT {precision}: the context's memory is seen",
                         bool(outside), f"{outside} MB outside torch's allocator")
        facts = backend.describe()
        gpu_record(**{precision: {"max_abs_diff": diff, "median_ms": _median_ms(samples),
                                  "memory_details": probe.details,
                                  "network": facts.get("network"),
                                  "engine_build_s": facts.get("engine_build_s")}})
        summary.append(f"{precision} {_median_ms(samples):.3f} ms, |diff| {diff:.2g}")
    gpu_record(summary=f"TensorRT {version} ({typing}): " + "; ".join(summary))


@pytest.mark.gpu_check(min_s=40.0)
def test_onnxruntime(gpu_record: Section, cuda: ModuleType, cuda_device: Device,
                     tmp_path: Path) -> None:
    """ONNX Runtime on CUDA: the session really runs on CUDAExecutionProvider, outputs
    bound to torch tensors match eager, its arena seen by the memory probe."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime-gpu is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed (the export needs it)")
    from pytest_hwopt.backends.cache import ArtifactCache
    from pytest_hwopt.backends.modelpath import Unsupported
    from pytest_hwopt.backends.ort import OnnxRuntimeBackend
    from pytest_hwopt.hardware.memory import CudaPeak

    torch = cuda
    gpu_record.fact(onnxruntime=ort.__version__)
    backend = OnnxRuntimeBackend(ArtifactCache(tmp_path / "cache"))
    why = backend.unavailable_reason(cuda_device)
    if why:
        pytest.skip(f"onnxruntime {ort.__version__}: {why}")
    model = _small_model(torch)
    x = torch.randn(16, 512, device="cuda")
    with torch.inference_mode():
        expected = model(x)
    try:
        run = backend.prepare(model, (x,), cuda_device, "fp32")
    except Unsupported as exc:  # a fallback: say so, it is what this section is about
        gpu_record.check("the session runs on CUDAExecutionProvider", False, str(exc))
        return
    facts = backend.describe()
    ok, detail = provider_verdict(list(facts.get("providers", [])), "CUDAExecutionProvider")
    gpu_record.check("the session runs on CUDAExecutionProvider", ok, detail)
    (out,) = run(x)
    gpu_record.check("outputs are torch tensors on the GPU", out.device.type == "cuda",
                     str(out.device))
    diff = float((out - expected).abs().max())
    ok, detail = outputs_verdict(diff, float(expected.abs().max()), 1e-3, 1e-3)
    gpu_record.check("ONNX Runtime matches eager", ok, detail)
    probe = CudaPeak(0)
    probe.measure(lambda: run(x))
    held = facts.get("device_memory_outside_torch_mb")
    gpu_record.check("ONNX Runtime's memory outside torch is seen",
                     bool(probe.details.get("outside_torch_mb")),
                     f"{held} MB ({facts.get('device_memory_outside_torch')})")
    gpu_record(providers=facts.get("providers"), max_abs_diff=diff,
               memory_details=probe.details, arena_mb=held,
               summary=f"{facts.get('providers')}, |diff| {diff:.2g}, arena {held} MB")


@pytest.mark.gpu_check(min_s=15.0)
def test_nvml_device_and_power(gpu_record: Section, cuda: ModuleType,
                               cuda_device: Device) -> None:
    """NVML's handle is torch's device (by UUID or PCI bus id); a GEMM loop's mean power
    lies between the idle power and the limit."""
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install "
                                         "nvidia-ml-py): the NVML section needs it")
    from pytest_hwopt.hardware.monitor import DeviceMonitor
    from pytest_hwopt.hardware.nvml import nvml_ids, shared_probe

    torch = cuda
    probe = shared_probe(0)
    if not probe.available():
        gpu_record.check("NVML available", False, str(probe.reason))
        return
    props = torch.cuda.get_device_properties(0)
    torch_uuid = str(getattr(props, "uuid", "") or "") or None
    facts = probe.facts()
    ok, detail = nvml_match_verdict(facts, torch_uuid)
    gpu_record.check("NVML's device is torch's cuda:0, matched by UUID or PCI bus id", ok,
                     detail)
    a, b, c, dtype = _gemm_operands(torch, 8192)

    def gemm() -> Any:
        return torch.mm(a, b, out=c)

    reading = DeviceMonitor(cuda_device).energy(gemm)
    limit = probe.power_limit_w()
    idle = reading["idle_power_w"] if reading else None
    mean = reading["mean_power_w"] if reading else None
    ok, detail = power_verdict(idle, mean, limit)
    gpu_record.check("busy mean power lies between idle power and the limit", ok, detail)
    gpu_record(ids=[str(i) for i in nvml_ids(0)], nvml_facts=facts, energy=reading,
               power_limit_w=limit, gemm=f"{dtype} 8192^3",
               summary=f"{detail}; {reading['mj_per_call'] if reading else '?'} mJ/call")


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


@pytest.mark.gpu_check(min_s=60.0)
def test_capture_failure(gpu_record: Section, cuda: ModuleType) -> None:
    """A host-syncing fn raises CaptureError (in a child: a failed capture can taint the
    CUDA context)."""
    proc = subprocess.run([sys.executable, "-c", CAPTURE_FAILURE_CODE], cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    text = (proc.stdout + proc.stderr)[-3000:]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("CAPTURE_ERROR:")), "")
    gpu_record.check("capturing fn that calls .item() raises CaptureError", bool(line),
                     line[:300] or text[-300:])
    gpu_record(returncode=proc.returncode, message=line, output_tail=text,
               summary=line[:200] or f"rc {proc.returncode}, no CaptureError")


@pytest.mark.gpu_check(min_s=30.0)
def test_suites(gpu_record: Section, cuda_torch: ModuleType, gpu_check_out: Path | None,
                gpu_time_left: Callable[[], float | None]) -> None:
    """The shipped suites on cuda, in a child pytest (their own session, settings and locks)."""
    if gpu_check_out is None:
        pytest.skip("the shipped suites run on cuda only as part of the GPU check "
                    "(--gpu-check-out or HWOPT_GPU_CHECK_OUT set)")
    suites = ROOT / "suites"
    if not suites.is_dir():
        gpu_record(ran=False, summary="no suites/ folder")
        return
    left = gpu_time_left()
    timeout = left - 5.0 if left is not None else None
    json_path = gpu_check_out / "suites.json"
    cmd = [sys.executable, "-m", "pytest", "suites", "--hwopt-device=cuda",
           "--hwopt-json", str(json_path), "-q", "-p", "no:cacheprovider"]
    if not plugin_entry_point():
        cmd[3:3] = ["-p", "pytest_hwopt.plugin"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-3000:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        gpu_record.check("suites finished within the time budget", False,
                         f"killed after {timeout:.0f} s")
        gpu_record(ran=True, timed_out=True, command=cmd, output_tail=text,
                   summary=f"timed out after {timeout:.0f} s")
        return
    text = (proc.stdout + proc.stderr)[-6000:]
    last = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.strip()), "")
    gpu_record(ran=True, command=cmd, returncode=proc.returncode, output_tail=text,
               json=str(json_path), summary=f"rc {proc.returncode}: {last}")
    gpu_record.check("pytest suites exit 0 (or 5: nothing collected)",
                     proc.returncode in (0, 5), f"rc {proc.returncode}: {last}")
