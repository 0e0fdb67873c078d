"""What one measured variant produced: raw per-call times, which of them were disturbed,
and what explains them."""

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
    setup: bool  # a setup ran before every call, untimed
    awaited: bool  # the variant returns an awaitable, awaited inside each timed call
    #: the first call took far longer than the steady state, and the variant has no setup
    first_call_note: str
    dtype: str  # the precision whose peak the roofline uses (default fp32)
    # the model path
    backend: str
    precision: str
    preparation_warnings: list[str]
    reference: str  # the variant of the eager run of the candidate's module and inputs
    from_cache: bool  # the backend's artefacts (ONNX file, engine) came from the cache
    # derived after the run
    memory_details: dict[str, float | None]  # the memory probe's extra figures (MB)
    energy_mj_per_call: float | None  # NVML: everything the GPU drew per call
    idle_power_w: float | None  # NVML: the GPU's draw with nothing running, read just before
    energy_above_idle_mj_per_call: float | None  # NVML: the part above the idle draw
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

#: a variant with a larger fraction of its samples disturbed decides no verdict. Its clean
#: samples are then a selection: if preemptions come at a steady rate, a sample is clean with
#: a probability that falls with its duration, which shifts the clean samples' centre down
#: by about ln(1 / clean fraction) x cv^2 (relative; cv the samples' coefficient of
#: variation; exponential tilting of a normal spread). At 25% clean and cv 10% that is 1.4%,
#: small against budget margins of 10% and more; the shift grows without bound as the clean
#: fraction falls, hence the cut.
MAX_DISTURBED_FRACTION: Final = 0.75
#: the fewest undisturbed samples, and undisturbed rounds (of both variants, for a ratio),
#: a verdict is read from: three give an interval (``stats.ratio_of_medians``)
MIN_CLEAN: Final = 3


@dataclass
class Measurement:
    """Raw per-call times (ms) of one variant, with statistics derived on demand.

    ``rounds`` holds, per interleaved round, the median per-call time of that
    round's block; speedups are computed from it. ``samples_ms`` are per-call
    times: one call per sample when calls are long enough for the timer, else the
    mean of ``calls_per_sample`` calls.

    ``disturbed[i]`` says whether sample i was taken while the process was kept from a
    CPU (preempted, or waiting in the run queue); ``rounds_disturbed[j]`` whether round
    j's block had no undisturbed sample (its value is then the median of all its samples,
    else of its undisturbed ones). Missing entries (an empty list: a timer without flags,
    an imported result) count as undisturbed. Every statistic below is computed from the
    undisturbed samples; only when none is undisturbed from all of them (such a variant
    decides no verdict: :data:`MAX_DISTURBED_FRACTION`).
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
    disturbed: list[bool] = field(default_factory=list)
    rounds_disturbed: list[bool] = field(default_factory=list)
    extra: MeasurementExtra = field(default_factory=lambda: MeasurementExtra())
    #: what the variant returned, before and after timing: arrays, tensors, numbers or
    #: nested containers of them, whatever the callable returns
    output: Any = field(default=None, repr=False, compare=False)
    output_after: Any = field(default=None, repr=False, compare=False)

    @property
    def calls(self) -> int:
        return len(self.samples_ms) * self.calls_per_sample

    @property
    def clean_samples_ms(self) -> list[float]:
        """The undisturbed samples (per call, ms); may be empty."""
        return _undisturbed(self.samples_ms, self.disturbed)

    @property
    def clean_rounds_ms(self) -> list[float]:
        """The values of rounds that had undisturbed samples (ms); may be empty."""
        return _undisturbed(self.rounds_ms, self.rounds_disturbed)

    @property
    def disturbed_fraction(self) -> float:
        """Fraction of samples that were disturbed (0.0 without samples)."""
        n = len(self.samples_ms)
        return sum(bool(d) for d in self.disturbed[:n]) / n if n else 0.0

    @property
    def stat_samples_ms(self) -> list[float]:
        """What the statistics are computed from: the undisturbed samples, or all samples
        when none is undisturbed."""
        return self.clean_samples_ms or list(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return stats.median(self.stat_samples_ms)

    @property
    def mean_ms(self) -> float:
        return stats.mean(self.stat_samples_ms)

    @property
    def p50_ms(self) -> float:
        return stats.percentile(self.stat_samples_ms, 50)

    @property
    def p95_ms(self) -> float:
        return stats.percentile(self.stat_samples_ms, 95)

    @property
    def p99_ms(self) -> float:
        return stats.percentile(self.stat_samples_ms, 99)

    @property
    def min_ms(self) -> float:
        return min(self.stat_samples_ms)

    @property
    def iqr_ms(self) -> float:
        return stats.iqr(self.stat_samples_ms)

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
            "disturbed": _aligned(self.disturbed, len(self.samples_ms)),
            "disturbed_fraction": self.disturbed_fraction,
            "rounds_disturbed": _aligned(self.rounds_disturbed, len(self.rounds_ms)),
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict` (derived statistics are recomputed; ``extra`` is not
        read back). ``data`` is a variant's JSON result."""
        kwargs = {k: data[k] for k in _RESTORED if k in data and data[k] is not None}
        disturbed = [bool(d) for d in data.get("disturbed") or []]
        if data.get("rounds_ms"):
            rounds = list(data["rounds_ms"])
            rounds_disturbed = [bool(d) for d in data.get("rounds_disturbed") or []]
        else:  # an older or imported result: each sample is a round
            rounds, rounds_disturbed = list(data["samples"]), list(disturbed)
        return cls(name=data["variant"], samples_ms=list(data["samples"]), rounds_ms=rounds,
                   disturbed=disturbed, rounds_disturbed=rounds_disturbed, **kwargs)


def clean_round_pairs(numerator: Measurement, denominator: Measurement
                      ) -> tuple[list[float], list[float]]:
    """Round values of two variants measured side by side, from the rounds in which
    neither was disturbed (for a ratio of medians over paired rounds).

    Rounds of different runs (unequal counts) are returned as they are, so that
    ``stats.ratio_of_medians`` reports the mismatch.
    """
    num, den = numerator.rounds_ms, denominator.rounds_ms
    if len(num) != len(den):
        return list(num), list(den)
    n = len(num)
    num_bad = _aligned(numerator.rounds_disturbed, n)
    den_bad = _aligned(denominator.rounds_disturbed, n)
    keep = [i for i in range(n) if not (num_bad[i] or den_bad[i])]
    return [num[i] for i in keep], [den[i] for i in keep]


def _aligned(flags: list[bool], n: int) -> list[bool]:
    """``flags`` cut or padded (undisturbed) to ``n`` entries."""
    return [bool(f) for f in flags[:n]] + [False] * max(0, n - len(flags))


def _undisturbed(values: list[float], flags: list[bool]) -> list[float]:
    return [v for v, bad in zip(values, _aligned(flags, len(values))) if not bad]
