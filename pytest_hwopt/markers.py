"""``hwopt.*`` marker factories: readable names for the ``hwopt_*`` pytest markers.

Arguments are validated when a test is set up (one code path for both spellings),
so a bad argument errors that test alone and it can never pass. Unknown keywords
are passed on for that validation to name them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import pytest

Budget = Union[float, Mapping[str, float]]

MARKERS = {
    "hwopt_speedup": "hwopt_speedup(min, vs, of=None): candidate at least `min` times faster "
                     "than variant `vs` (ratio of medians, 95% CI).",
    "hwopt_latency": "hwopt_latency(p50_ms=None, p95_ms=None, p99_ms=None, mean_ms=None, "
                     "of=None): per-call latency budget in ms.",
    "hwopt_throughput": "hwopt_throughput(min, of=None): items per second at least `min`.",
    "hwopt_memory": "hwopt_memory(max_mb, of=None): peak memory added while the candidate "
                    "runs, at most `max_mb`.",
    "hwopt_accuracy": "hwopt_accuracy(atol=None, rtol=None, vs=None, of=None, rel_l2=None): "
                      "candidate outputs match `vs` outputs (element-wise, or relative L2 "
                      "error at most rel_l2).",
    "hwopt_requires": "hwopt_requires(device=None, backends=None): skip unless the device "
                      "and backends are available.",
    "hwopt_cold_start": "hwopt_cold_start(max_s, of=None): preparation plus first call at "
                        "most `max_s` seconds.",
    "hwopt_energy": "hwopt_energy(max_mj, of=None): energy per call at most `max_mj` (NVML).",
    "hwopt_roofline": "hwopt_roofline(min_fraction, of=None): achieved fraction of the "
                      "device's roofline.",
}


class _Hwopt:
    """Marker factories; each returns the ``pytest.mark.hwopt_*`` mark it stands for.

    Required arguments default to None here so that leaving one out errors that
    test at setup with the marker's name, rather than the whole module at import.
    """

    def speedup(self, min: Budget | None = None, vs: str | None = None, of: str | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_speedup(min=min, vs=vs, of=of, **unknown)

    def latency(self, p50_ms: Budget | None = None, p95_ms: Budget | None = None,
                p99_ms: Budget | None = None, mean_ms: Budget | None = None,
                of: str | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_latency(p50_ms=p50_ms, p95_ms=p95_ms, p99_ms=p99_ms,
                                         mean_ms=mean_ms, of=of, **unknown)

    def throughput(self, min: Budget | None = None, of: str | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_throughput(min=min, of=of, **unknown)

    def memory(self, max_mb: Budget | None = None, of: str | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_memory(max_mb=max_mb, of=of, **unknown)

    def accuracy(self, atol: Budget | None = None, rtol: Budget | None = None,
                 vs: str | None = None, of: str | None = None, rel_l2: Budget | None = None,
                 **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_accuracy(atol=atol, rtol=rtol, vs=vs, of=of, rel_l2=rel_l2,
                                          **unknown)

    def requires(self, device: str | Sequence[str] | None = None,
                 backends: str | Sequence[str] | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_requires(device=device, backends=backends, **unknown)

    def cold_start(self, max_s: Budget | None = None, of: str | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_cold_start(max_s=max_s, of=of, **unknown)

    def energy(self, max_mj: Budget | None = None, of: str | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_energy(max_mj=max_mj, of=of, **unknown)

    def roofline(self, min_fraction: Budget | None = None, of: str | None = None, **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_roofline(min_fraction=min_fraction, of=of, **unknown)


hwopt = _Hwopt()


def marker_arguments(mark: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments of a mark, dropping keywords left at None."""
    return tuple(mark.args), {k: v for k, v in mark.kwargs.items() if v is not None}
