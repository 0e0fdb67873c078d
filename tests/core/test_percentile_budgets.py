"""Percentile budgets are only as confident as the sample count allows (core.kinds with
core.stats' order-statistic bounds), and timing budgets step aside with timing off."""

from __future__ import annotations

import pytest

from pytest_hwopt.core.checks import FAILED, INCONCLUSIVE, PASSED, SKIPPED, Check
from pytest_hwopt.core.kinds import TOO_FEW_SAMPLES, without_timing
from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.specs import parse_marker
from pytest_hwopt.core.verdicts import evaluate

CPU = ["cpu"]


def spec(kind, **kwargs):
    return parse_marker(kind, (), kwargs)


def measured(samples, name="slow", items=1):
    return Measurement(name=name, samples_ms=list(samples), rounds_ms=list(samples), items=items)


def test_four_samples_never_pass_a_p95_budget():
    """The issue's case: a 0.5 s call, slow (0.8 s) one time in ten, read 4 times, all fast.
    The largest sample is no 95% bound on p95: inconclusive, and the message says how many
    samples the budget needs."""
    (check,) = evaluate(spec("latency", p95_ms=600), measured([500.2, 500.1, 500.3, 500.2]),
                        None, CPU)
    assert check.status is INCONCLUSIVE
    assert check.point_passed is True  # for reference only
    assert check.high is None and check.low == 500.2
    assert check.reason.startswith(f"{TOO_FEW_SAMPLES}: an upper bound on p95 at 95% needs at "
                                   "least 59 samples, 4 taken")
    assert "about 29.5 s of samples at 500 ms each" in check.reason
    assert "(95% CI 500-?)" in check.message
    assert check.detail["samples"] == 4 and check.detail["samples_needed"] == 59


def test_enough_samples_decide_a_p95_budget():
    fast = measured([10.0 + 0.01 * i for i in range(59)])
    (check,) = evaluate(spec("latency", p95_ms=600), fast, None, CPU)
    assert check.status is PASSED and check.high == pytest.approx(10.58)


def test_a_lower_bound_fails_a_budget_from_few_samples():
    """Three of four calls above the budget: p95 is above it with 98.6% confidence (the
    third smallest of four samples is a 95% lower bound on p95)."""
    (check,) = evaluate(spec("latency", p95_ms=400), measured([500.0, 510.0, 520.0, 300.0]),
                        None, CPU)
    assert check.status is FAILED and check.low == 510.0


def test_p99_needs_far_more_samples_than_p50():
    samples = [1.0 + 0.001 * i for i in range(100)]
    p50, p99 = evaluate(spec("latency", p50_ms=5, p99_ms=5), measured(samples), None, CPU)
    assert p50.status is PASSED
    assert p99.status is INCONCLUSIVE
    assert "needs at least 299 samples, 100 taken" in p99.reason
    assert p99.detail["samples_needed"] == 299


def test_throughput_from_too_few_samples_is_inconclusive():
    (check,) = evaluate(spec("throughput", min=1.0), measured([10.0] * 4, items=8), None, CPU)
    assert check.status is INCONCLUSIVE
    assert "an upper bound on p50 at 95% needs at least 5 samples, 4 taken" in check.reason
    (check,) = evaluate(spec("throughput", min=1.0), measured([10.0] * 5, items=8), None, CPU)
    assert check.status is PASSED and check.low == 800.0


def test_timing_off_skips_every_timed_kind_with_the_reason():
    checks = [
        Check(kind="speedup", variant="fast", vs="slow", status=PASSED, message="m",
              budget=2.0, measured=3.0, unit="x", metric="min"),
        Check(kind="latency", variant="fast", status=FAILED, message="m", budget=1.0,
              measured=5.0, unit="ms", metric="p95_ms"),
        Check(kind="accuracy", variant="fast", vs="slow", status=FAILED, message="wrong"),
        Check(kind="memory", variant="fast", status=PASSED, message="m", budget=10.0,
              measured=1.0, unit="MB", metric="max_mb"),
        Check(kind="a-plugin-kind", variant="fast", status=PASSED, message="m"),
    ]
    out = without_timing(checks, "timing off")
    assert [c.status for c in out] == [SKIPPED, SKIPPED, FAILED, PASSED, PASSED]
    assert out[0].message == "speedup of fast vs slow: not measured (timing off)"
    assert out[1].reason == "timing off" and out[1].measured is None
    assert out[1].budget == 1.0
