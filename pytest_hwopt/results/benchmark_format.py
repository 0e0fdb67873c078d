"""pytest-benchmark interop: its timings as :class:`Measurement`, our results in its JSON format.

Pure: no pytest, no torch, and pytest-benchmark is not imported here either (the
fixture is read through its attributes, the JSON is built from our document).

* :func:`measurements_from_benchmark` turns the raw per-round timings that
  pytest-benchmark's ``benchmark`` fixture collected into a :class:`Measurement`
  (variant ``"benchmark"``), so ``hwopt.latency`` and ``hwopt.throughput``
  budgets can judge a test written with pytest-benchmark.
* :func:`to_benchmark_json` renders a pytest-hwopt results document in the
  format of ``pytest --benchmark-json`` (times in seconds), which
  ``pytest-benchmark compare FILE`` reads: one benchmark per test and variant,
  grouped by test.
"""

from __future__ import annotations

import platform
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TypedDict

from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.results.jsonio import write_json_atomic
from pytest_hwopt.results.schema import Environment, ResultsDocument

BENCHMARK_VARIANT = "benchmark"
FORMAT_VERSION = "5.1.0"  # the pytest-benchmark release whose JSON layout this follows


class BenchmarkStats(TypedDict):
    """The ``stats`` of one pytest-benchmark JSON entry; times in seconds."""

    min: float
    max: float
    mean: float
    stddev: float
    rounds: int
    median: float
    iqr: float
    q1: float
    q3: float
    iqr_outliers: int
    stddev_outliers: int
    outliers: str  # "stddev;iqr"
    ld15iqr: float
    hd15iqr: float
    ops: float
    total: float
    data: list[float]
    iterations: int


def measurements_from_benchmark(fixture: object) -> dict[str, Measurement]:
    """``{"benchmark": Measurement}`` from a pytest-benchmark ``BenchmarkFixture`` that ran.

    ``fixture.stats`` is pytest-benchmark's ``Metadata``; ``fixture.stats.stats.data``
    holds one time per round in seconds, already divided by the round's iterations,
    so each sample is the mean of ``iterations`` calls. ``extra_info["items"]``, when
    the test sets it, counts items per call for throughput. Returns ``{}`` when the
    fixture did not run (not called, ``--benchmark-disable``, ``--benchmark-skip``).
    """
    meta = getattr(fixture, "stats", None)
    raw = getattr(getattr(meta, "stats", None), "data", None)
    if not raw:
        return {}
    samples = [float(t) * 1000.0 for t in raw]
    iterations = int(getattr(meta, "iterations", 1) or 1)
    extra_info = getattr(fixture, "extra_info", None) or {}
    items = extra_info.get("items", 1)
    if isinstance(items, bool) or not isinstance(items, int) or items < 1:
        items = 1
    options = getattr(meta, "options", None) or {}
    timer = options.get("timer")
    timer_name = getattr(timer, "__name__", None) or (str(timer) if timer else "")
    return {BENCHMARK_VARIANT: Measurement(
        name=BENCHMARK_VARIANT, samples_ms=samples, rounds_ms=list(samples),
        calls_per_sample=iterations, items=items,
        timer=f"pytest-benchmark {timer_name}".strip(),
        extra={"source": "pytest-benchmark"})}


# ---- pytest-benchmark's statistics, reproduced (pytest_benchmark.stats.Stats) ------------

def _quartiles(data: Sequence[float]) -> tuple[float, float]:
    rounds = len(data)
    if rounds == 1:
        return data[0], data[0]
    if rounds % 2:
        n, q = rounds // 4, rounds % 4
        if q == 1:
            return (0.25 * data[n - 1] + 0.75 * data[n],
                    0.75 * data[3 * n] + 0.25 * data[3 * n + 1])
        return (0.75 * data[n] + 0.25 * data[n + 1],
                0.25 * data[3 * n + 1] + 0.75 * data[3 * n + 2])
    return statistics.median(data[: rounds // 2]), statistics.median(data[rounds // 2:])


def benchmark_stats(samples_s: Sequence[float], iterations: int = 1) -> BenchmarkStats:
    """The ``stats`` object of one pytest-benchmark JSON entry, from per-iteration seconds."""
    data = [float(s) for s in samples_s]
    if not data:
        raise ValueError("no samples")
    ordered = sorted(data)
    rounds = len(data)
    mean = statistics.mean(data)
    stddev: float = statistics.stdev(data) if rounds > 1 else 0  # 0, as pytest-benchmark writes it
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    if rounds == 1:
        ld15iqr = hd15iqr = data[0]
    else:
        ld15iqr = ordered[bisect_left(ordered, q1 - 1.5 * iqr)]
        hd15iqr = ordered[bisect_right(ordered, q3 + 1.5 * iqr) - 1]
    iqr_outliers = sum(1 for v in data if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr)
    stddev_outliers = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    total = sum(data)
    return {
        "min": min(data), "max": max(data), "mean": mean, "stddev": stddev, "rounds": rounds,
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}", "ld15iqr": ld15iqr,
        "hd15iqr": hd15iqr, "ops": rounds / total if total else 0, "total": total,
        "data": data, "iterations": int(iterations),
    }


class BenchmarkNames(TypedDict):
    """How one variant of one test is named in pytest-benchmark's JSON."""

    name: str  # test_op[ns::op-onnxruntime]
    fullname: str  # f.py::test_op[ns::op-onnxruntime]
    param: str  # ns::op-onnxruntime
    params: dict[str, object]  # the test's parameters and the variant


def benchmark_names(test: str, variant: str, meta: Mapping[str, object]) -> BenchmarkNames:
    """The names of ``variant`` of ``test``: pytest's name of the test with the variant
    added to its parameters (``test_op[ns::op]`` -> ``test_op[ns::op-onnxruntime]``).

    ``meta`` is the test's entry in the document's ``tests``: ``name``, ``originalname``,
    ``param`` (callspec id) and ``params`` as pytest gave them, so ids holding ``::``,
    ``[`` or ``]`` stay whole. A document written before tests carried names falls back to
    the node id's text after its last ``::`` outside the brackets.
    """
    name = meta.get("name")
    if not isinstance(name, str) or not test.endswith(name):
        head, bracket, rest = test.partition("[")  # ids may hold "::", paths do not
        name = head.rsplit("::", 1)[-1] + bracket + rest
    original = meta.get("originalname")
    param = meta.get("param")
    if not isinstance(original, str) or not isinstance(param, str):
        original, param = name, None  # not parametrized
        if name.endswith("]") and "[" in name and "name" not in meta:  # an old document
            original, _, rest = name.partition("[")
            param = rest[:-1]
    joined = variant if param is None else f"{param}-{variant}"
    prefix = test[:len(test) - len(name)] if test.endswith(name) else ""
    params = meta.get("params")
    return {"name": f"{original}[{joined}]", "fullname": f"{prefix}{original}[{joined}]",
            "param": joined,
            "params": {**(params if isinstance(params, Mapping) else {}), "variant": variant}}


def _machine_info(env: Environment) -> dict[str, object]:
    return {
        "node": env.get("hostname", ""),
        "processor": env.get("cpu", ""),
        "machine": env.get("machine", platform.machine()),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": env.get("python", platform.python_version()),
        "python_version": env.get("python", platform.python_version()),
        "python_build": list(platform.python_build()),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": {"brand_raw": env.get("cpu", ""), "arch": env.get("machine", ""),
                "count": env.get("logical_cores")},
        "hwopt": {k: env[k] for k in ("device", "device_name", "gpu", "threads", "versions",
                                      "platform") if k in env},
    }


def to_benchmark_json(document: ResultsDocument, when: datetime | None = None
                      ) -> dict[str, object]:
    """A pytest-hwopt document in the JSON format of ``pytest --benchmark-json``."""
    env = document.get("environment") or {}
    settings = env.get("settings") or {}
    options = {
        "disable_gc": False,
        "min_rounds": settings.get("min_rounds"),
        "max_time": settings.get("max_time_s"),
        "min_time": None,
        "precision": None,
        "confidence": settings.get("confidence"),
        "warmup": bool(settings.get("warmup_ms", 0)),
    }
    benchmarks = []
    tests = {str(meta.get("test")): meta for meta in document.get("tests") or []}
    for row in document.get("results", []):
        test, variant = row["test"], row["variant"]
        names = benchmark_names(test, variant, tests.get(test, {}))
        iterations = int(row.get("calls_per_sample") or 1)
        samples_s = [float(s) / 1000.0 for s in row["samples"]]
        benchmarks.append({
            "group": test,
            **names,
            "extra_info": {k: row[k] for k in ("variant", "items", "p95_ms", "p99_ms",
                                               "throughput_per_s", "calls", "timer",
                                               "peak_memory_mb") if row.get(k) is not None},
            "options": {**options, "timer": row.get("timer") or "perf_counter"},
            "stats": benchmark_stats(samples_s, iterations),
        })
    return {
        "machine_info": _machine_info(env),
        "commit_info": {"id": None, "time": None, "author_time": None, "dirty": None,
                        "project": None, "branch": None},
        "benchmarks": benchmarks,
        "datetime": (when or datetime.now(timezone.utc)).isoformat(),
        "version": FORMAT_VERSION,
    }


def write_benchmark_json(path: str | Path, document: ResultsDocument) -> Path:
    """Write :func:`to_benchmark_json` of ``document`` to ``path`` atomically."""
    return write_json_atomic(path, to_benchmark_json(document))
