"""Unit tests for pytest_hwopt.results.benchmark_format: timings in, pytest-benchmark JSON out."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from pytest_hwopt.results import benchmark_format as interop
from pytest_hwopt.results.benchmark_format import (
    benchmark_stats,
    measurements_from_benchmark,
    to_benchmark_json,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 17, 64])
def test_stats_match_pytest_benchmark(n):
    bench_stats = pytest.importorskip("pytest_benchmark.stats")
    rng = random.Random(n)
    data = [rng.choice([1e-3, 2e-3]) * (1 + rng.random()) for _ in range(n)]
    if n > 5:
        data[0] = 1.0  # an outlier
    reference = bench_stats.Stats()
    for value in data:
        reference.update(value)
    ours = benchmark_stats(data, iterations=3)
    for field in bench_stats.Stats.fields:
        assert ours[field] == pytest.approx(getattr(reference, field)), field
    assert ours["data"] == data and ours["iterations"] == 3


def test_stats_need_samples():
    with pytest.raises(ValueError):
        benchmark_stats([])


def fake_fixture(data, iterations=1, extra_info=None, timer=None):
    meta = SimpleNamespace(stats=SimpleNamespace(data=list(data)), iterations=iterations,
                           options={"timer": timer} if timer else {})
    return SimpleNamespace(stats=meta, extra_info=extra_info or {})


def test_measurement_from_fixture_timings():
    import time

    found = measurements_from_benchmark(fake_fixture([0.001, 0.002, 0.003], iterations=10,
                                                     extra_info={"items": 32},
                                                     timer=time.perf_counter))
    m = found["benchmark"]
    assert m.samples_ms == pytest.approx([1.0, 2.0, 3.0])
    assert m.rounds_ms == m.samples_ms
    assert m.calls_per_sample == 10 and m.calls == 30
    assert m.items == 32 and m.throughput == pytest.approx(32 * 1000 / 2.0)
    assert m.timer == "pytest-benchmark perf_counter"
    assert m.to_dict()["source"] == "pytest-benchmark"


@pytest.mark.parametrize("fixture", [
    SimpleNamespace(stats=None, extra_info={}),
    fake_fixture([]),
    SimpleNamespace(),
])
def test_a_fixture_that_did_not_run_gives_nothing(fixture):
    assert measurements_from_benchmark(fixture) == {}


def test_bad_items_count_as_one():
    assert measurements_from_benchmark(fake_fixture([1.0], extra_info={"items": "many"})
                                       )["benchmark"].items == 1


def test_document_to_benchmark_json():
    document = {
        "version": "0.1.0", "format": 1,
        "environment": {"hostname": "box", "cpu": "EPYC", "machine": "x86_64",
                        "python": "3.11.7", "threads": 4,
                        "settings": {"min_rounds": 8, "max_time_s": 5.0, "confidence": 0.95,
                                     "warmup_ms": 50.0}},
        "results": [
            {"test": "s/test_a.py::test_x", "variant": "fast", "samples": [1.0, 2.0, 3.0],
             "calls_per_sample": 4, "p95_ms": 2.9, "timer": "perf_counter_ns"},
            {"test": "s/test_a.py::test_y[128]", "variant": "slow", "samples": [10.0]},
        ],
    }
    when = datetime(2024, 1, 2, tzinfo=timezone.utc)
    out = to_benchmark_json(document, when)
    assert set(out) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert out["datetime"] == "2024-01-02T00:00:00+00:00"
    assert out["machine_info"]["node"] == "box"
    assert out["machine_info"]["cpu"]["brand_raw"] == "EPYC"
    first, second = out["benchmarks"]
    assert first["group"] == "s/test_a.py::test_x"
    assert first["name"] == "test_x[fast]"
    assert first["fullname"] == "s/test_a.py::test_x[fast]"
    assert first["param"] == "fast" and first["params"] == {"variant": "fast"}
    assert first["stats"]["data"] == pytest.approx([0.001, 0.002, 0.003])
    assert first["stats"]["median"] == pytest.approx(0.002)
    assert first["stats"]["iterations"] == 4
    assert first["options"]["timer"] == "perf_counter_ns"
    assert first["options"]["min_rounds"] == 8
    assert first["extra_info"] == {"variant": "fast", "p95_ms": 2.9, "timer": "perf_counter_ns"}
    assert second["name"] == "test_y[128-slow]" and second["param"] == "128-slow"
    assert second["fullname"] == "s/test_a.py::test_y[128-slow]"
    assert second["stats"]["rounds"] == 1 and second["stats"]["iterations"] == 1
    assert set(interop.benchmark_stats([1.0])) >= {
        "min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers",
        "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "data",
        "iterations"}


def test_names_come_from_the_tests_entry_not_the_node_id():
    meta = {"test": "t.py::test_op[ns::op-shape=[1, 3]]", "name": "test_op[ns::op-shape=[1, 3]]",
            "originalname": "test_op", "param": "ns::op-shape=[1, 3]",
            "params": {"case": 1, "shape": "[1, 3]"}}
    names = interop.benchmark_names(meta["test"], "fast", meta)
    assert names == {"name": "test_op[ns::op-shape=[1, 3]-fast]",
                     "fullname": "t.py::test_op[ns::op-shape=[1, 3]-fast]",
                     "param": "ns::op-shape=[1, 3]-fast",
                     "params": {"case": 1, "shape": "[1, 3]", "variant": "fast"}}
    plain = interop.benchmark_names("t.py::TestA::test_b", "slow",
                                    {"name": "test_b", "originalname": "test_b"})
    assert (plain["name"], plain["fullname"]) == ("test_b[slow]", "t.py::TestA::test_b[slow]")
