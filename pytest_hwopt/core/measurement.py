"""What one measured variant produced: raw per-call times and what explains them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

from pytest_hwopt.core import stats


class MeasurementExtra(TypedDict, total=False):
    """Facts beside the timings, written into a variant's JSON result next to its statistics.

    The keys the plugin itself writes are listed; a backend adds its own facts
    (``Backend.describe()``: exporter, graph breaks, engine build time ...) under
    further keys, which this type does not list.
    """

    # declared in measure(): work per call, for the roofline
    bytes: float
    flops: float
    cuda_graph: bool  # fn is a captured CUDA graph's replay
    dtype: str  # the precision whose peak the roofline uses (default fp32)
    # the model path
    backend: str
    precision: str
    preparation_warnings: list[str]
    # derived after the run
    memory_details: dict[str, float | None]  # the memory probe's extra figures (MB)
    energy_mj_per_call: float | None  # NVML
    achieved_gbs: float | None
    achieved_tflops: float | None
    achieved_intensity: float | None  # FLOP per byte
    roofline_fraction: float
    peak_gbs: float
    peak_tflops: float | None
    # imported results
    source: str  # e.g. "pytest-benchmark"


#: ``to_dict`` keys that :meth:`Measurement.from_dict` reads back as fields
_RESTORED: Final = ("prepare_s", "first_call_ms", "peak_memory_mb", "memory_kind",
                    "minor_faults_per_call", "timer", "items", "calls_per_sample",
                    "warmup_calls")


@dataclass
class Measurement:
    """Raw per-call times (ms) of one variant, with statistics derived on demand.

    ``rounds`` holds, per interleaved round, the median per-call time of that
    round's block; speedups are computed from it. ``samples_ms`` are per-call
    times: one call per sample when calls are long enough for the timer, else the
    mean of ``calls_per_sample`` calls.
    """

    name: str
    samples_ms: list[float]
    rounds_ms: list[float]
    calls_per_sample: int = 1
    items: int = 1
    warmup_calls: int = 0
    first_call_ms: float | None = None
    prepare_s: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str = ""
    minor_faults_per_call: float | None = None
    timer: str = ""
    extra: MeasurementExtra = field(default_factory=lambda: MeasurementExtra())
    #: what the variant returned, before and after timing: arrays, tensors, numbers or
    #: nested containers of them, whatever the callable returns
    output: Any = field(default=None, repr=False, compare=False)
    output_after: Any = field(default=None, repr=False, compare=False)

    @property
    def calls(self) -> int:
        return len(self.samples_ms) * self.calls_per_sample

    @property
    def median_ms(self) -> float:
        return stats.median(self.samples_ms)

    @property
    def mean_ms(self) -> float:
        return stats.mean(self.samples_ms)

    @property
    def p50_ms(self) -> float:
        return stats.percentile(self.samples_ms, 50)

    @property
    def p95_ms(self) -> float:
        return stats.percentile(self.samples_ms, 95)

    @property
    def p99_ms(self) -> float:
        return stats.percentile(self.samples_ms, 99)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        return stats.iqr(self.samples_ms)

    @property
    def throughput(self) -> float:
        """Items per second at the median per-call time."""
        return self.items * 1000.0 / self.median_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, raw samples included; ``extra`` follows the statistics."""
        out: dict[str, Any] = {
            "variant": self.name,
            "median_ms": self.median_ms,
            "mean_ms": self.mean_ms,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "min_ms": self.min_ms,
            "iqr_ms": self.iqr_ms,
            "throughput_per_s": self.throughput,
            "items": self.items,
            "calls": self.calls,
            "calls_per_sample": self.calls_per_sample,
            "rounds": len(self.rounds_ms),
            "warmup_calls": self.warmup_calls,
            "first_call_ms": self.first_call_ms,
            "prepare_s": self.prepare_s,
            "peak_memory_mb": self.peak_memory_mb,
            "memory_kind": self.memory_kind,
            "minor_faults_per_call": self.minor_faults_per_call,
            "timer": self.timer,
            "percentile_method": stats.PERCENTILE_METHOD,
            "samples": list(self.samples_ms),
            "rounds_ms": list(self.rounds_ms),
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict` (derived statistics are recomputed; ``extra`` is not
        read back). ``data`` is a variant's JSON result."""
        kwargs = {k: data[k] for k in _RESTORED if k in data and data[k] is not None}
        return cls(name=data["variant"], samples_ms=list(data["samples"]),
                   rounds_ms=list(data.get("rounds_ms") or data["samples"]), **kwargs)
