"""Unit tests for pytest_hwopt.core.verdicts: roles, verdicts and their messages.

Measurements are built by hand so every statistic, and so every verdict, is exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.specs import TOLERANCES, parse_marker
from pytest_hwopt.core.verdicts import (
    FAILED,
    INCONCLUSIVE,
    PASSED,
    SKIPPED,
    Check,
    RoleError,
    accuracy_check,
    assign_roles,
    evaluate,
    evaluate_all,
    gate_on_accuracy,
    reported_speedups,
    undecided,
)

CPU = ["cpu"]
H100 = ["NVIDIA H100 80GB HBM3", "cuda:0", "cuda"]
HUNDRED = [float(x) for x in range(1, 101)]
NAIVE_ROUNDS = [2.0, 4.0, 6.0, 8.0, 3.0, 5.0, 7.0, 9.0, 2.5]


def spec(kind, **kwargs):
    return parse_marker(kind, (), kwargs)


def measurement(name, samples=(1.0, 1.0, 1.0), rounds=None, **kwargs):
    samples = list(samples)
    return Measurement(name, samples, list(rounds) if rounds is not None else samples, **kwargs)


def exact_pair(factor=2.0):
    """naive and fused where every round of fused is exactly ``factor`` times faster."""
    naive = measurement("naive", [10.0] * 9, NAIVE_ROUNDS)
    fused = measurement("fused", [10.0 / factor] * 9, [r / factor for r in NAIVE_ROUNDS])
    return naive, fused


# --- assign_roles ---------------------------------------------------------------------------


def test_candidate_is_the_variant_no_vs_names():
    s = spec("speedup", min=2.0, vs="naive")
    assert assign_roles([s], ["naive", "fused"]) == [(s, "fused", "naive")]


def test_candidate_inferred_for_budgets_without_vs():
    speed, lat = spec("speedup", min=2.0, vs="naive"), spec("latency", p95_ms=5.0)
    assert assign_roles([speed, lat], ["fused", "naive"]) == [(speed, "fused", "naive"),
                                                              (lat, "fused", None)]


def test_single_variant_is_the_candidate():
    lat = spec("latency", p50_ms=1.0)
    assert assign_roles([lat], ["only"]) == [(lat, "only", None)]


def test_of_wins_over_inference():
    s = spec("speedup", min=2.0, vs="naive", of="fused")
    m = spec("memory", max_mb=10.0, of="naive")
    assert assign_roles([s, m], ["naive", "fused", "other"]) == [(s, "fused", "naive"),
                                                                 (m, "naive", None)]


def test_ambiguous_candidate_lists_the_variants():
    s = spec("speedup", min=2.0, vs="naive")
    with pytest.raises(RoleError) as info:
        assign_roles([s], ["naive", "fused", "compiled"])
    msg = str(info.value)
    assert "cannot tell which variant" in msg
    assert "'naive', 'fused', 'compiled'" in msg
    assert "of=<variant>" in msg
    assert msg.startswith("hwopt.speedup(min=2.0)")


def test_ambiguous_without_any_vs():
    with pytest.raises(RoleError, match="measured 'a', 'b'"):
        assign_roles([spec("latency", p95_ms=5.0)], ["a", "b"])


@pytest.mark.parametrize("s", [spec("speedup", min=2.0, vs="slow"),
                               spec("latency", p95_ms=1.0, of="slow")])
def test_unknown_variant_named(s):
    with pytest.raises(RoleError) as info:
        assign_roles([s], ["naive", "fused"])
    assert str(info.value) == "budget names variant 'slow', but the test measured 'naive', 'fused'"


def test_no_variants_measured():
    with pytest.raises(RoleError, match="measured none"):
        assign_roles([spec("speedup", min=2.0, vs="naive")], [])


def test_accuracy_without_vs_uses_the_single_reference():
    speed, acc = spec("speedup", min=2.0, vs="naive"), spec("accuracy", atol=1e-3)
    assert assign_roles([speed, acc], ["naive", "fused"])[1] == (acc, "fused", "naive")


def test_accuracy_without_any_reference():
    with pytest.raises(RoleError, match="pass vs=<variant>"):
        assign_roles([spec("accuracy", of="fused")], ["naive", "fused"])


def test_variant_compared_with_itself():
    with pytest.raises(RoleError, match="'naive' compared with itself"):
        assign_roles([spec("speedup", min=2.0, vs="naive", of="naive")], ["naive", "fused"])


# --- speedup --------------------------------------------------------------------------------


def test_speedup_pass_exact_message():
    naive, fused = exact_pair()
    (check,) = evaluate(spec("speedup", min=2.0, vs="naive"), fused, naive, CPU)
    assert check.status == PASSED and check.passed
    assert (check.measured, check.low, check.high, check.budget) == (2.0, 2.0, 2.0, 2.0)
    assert (check.kind, check.variant, check.vs, check.unit, check.metric) == \
        ("speedup", "fused", "naive", "x", "min")
    assert check.message == "speedup of fused vs naive: 2.00x (95% CI 2.00-2.00) >= 2.0x"


def test_speedup_fail_exact_message():
    naive, fused = exact_pair()
    (check,) = evaluate(spec("speedup", min=3.0, vs="naive"), fused, naive, CPU)
    assert check.status == FAILED and not check.passed
    assert check.message == "speedup of fused vs naive: 2.00x (95% CI 2.00-2.00) < 3.0x"


def test_speedup_budget_formatting():
    naive, fused = exact_pair()
    (check,) = evaluate(spec("speedup", min=1.25, vs="naive"), fused, naive, CPU,
                        confidence=0.9)
    assert check.message == "speedup of fused vs naive: 2.00x (90% CI 2.00-2.00) >= 1.25x"


def test_speedup_inconclusive_keeps_point_verdict():
    """Noisy rounds: the interval straddles the budget, the point estimate decides."""
    naive = measurement("naive", [10.0] * 9, [10.0] * 9)
    fused = measurement("fused", [5.0] * 9, [4.0, 4.5, 4.8, 5.0, 5.0, 5.2, 5.5, 6.0, 4.2])
    (check,) = evaluate(spec("speedup", min=2.0, vs="naive"), fused, naive, CPU)
    assert check.status == INCONCLUSIVE
    assert check.measured == 2.0
    assert check.low < 2.0 < check.high
    assert check.passed and check.point_passed is True
    assert check.to_dict()["detail"] == {"point_passed": True}
    assert check.message.startswith("speedup of fused vs naive: 2.00x (95% CI ")
    assert check.message.endswith(") >= 2.0x (inconclusive: interval straddles the budget)")

    (check,) = evaluate(spec("speedup", min=2.1, vs="naive"), fused, naive, CPU)
    assert check.status == INCONCLUSIVE and not check.passed
    assert ") < 2.1x (inconclusive" in check.message


def test_speedup_with_two_rounds_is_inconclusive():
    naive = measurement("naive", [10.0, 10.0], [10.0, 10.0])
    fused = measurement("fused", [1.0, 1.0], [1.0, 1.0])
    (check,) = evaluate(spec("speedup", min=2.0, vs="naive"), fused, naive, CPU)
    assert check.status == INCONCLUSIVE and check.passed
    assert (check.low, check.high) == (0.0, None)  # no upper bound from two rounds


def test_speedup_per_device_budget():
    naive, fused = exact_pair()
    s = spec("speedup", min={"cpu": 1.5, "cuda": 3.0, "H100": 1.9}, vs="naive")
    (cpu,) = evaluate(s, fused, naive, CPU)
    assert (cpu.budget, cpu.budget_key, cpu.status) == (1.5, "cpu", PASSED)
    (gpu,) = evaluate(s, fused, naive, H100)
    assert (gpu.budget, gpu.budget_key, gpu.status) == (1.9, "H100", PASSED)
    (other,) = evaluate(spec("speedup", min={"cpu": 1.5, "cuda": 3.0}, vs="naive"),
                        fused, naive, H100)
    assert (other.budget, other.budget_key, other.status) == (3.0, "cuda", FAILED)


def test_per_device_budget_missing_is_skipped():
    naive, fused = exact_pair()
    (check,) = evaluate(spec("speedup", min={"cuda": 3.0}, vs="naive"), fused, naive, CPU)
    assert check.status == SKIPPED and check.passed
    assert (check.budget, check.measured) == (None, None)
    assert check.message == "speedup of fused: no budget for cpu (budgets given for cuda)"


def test_per_device_budget_missing_only_skips_that_percentile():
    m = measurement("fast", HUNDRED)
    checks = evaluate(spec("latency", p50_ms={"cuda": 1.0}, p95_ms=200.0), m, None, CPU)
    assert [(c.metric, c.status) for c in checks] == [("p50_ms", SKIPPED), ("p95_ms", PASSED)]


# --- latency --------------------------------------------------------------------------------


def test_latency_percentiles_exact():
    """Samples 1..100 ms, one-sided 95% order-statistic bounds: p50 50.5 in [42, 59], p95
    95.05 in [91, 99], p99 99.01 above 97 (an upper bound on p99 needs 299 samples)."""
    m = measurement("fast", HUNDRED)
    checks = evaluate(spec("latency", p50_ms=100, p95_ms=96, p99_ms=50), m, None, CPU)
    p50, p95, p99 = checks
    assert (p50.measured, p50.low, p50.high, p50.status) == (50.5, 42.0, 59.0, PASSED)
    assert p50.message == "p50 latency of fast: 50.5 ms (95% CI 42-59) <= 100.0 ms"
    assert (p95.measured, p95.low, p95.high, p95.status) == (pytest.approx(95.05), 91.0, 99.0,
                                                             INCONCLUSIVE)
    assert p95.message == ("p95 latency of fast: 95 ms (95% CI 91-99) <= 96.0 ms "
                           "(inconclusive: interval straddles the budget)")
    assert p95.passed
    assert (p99.measured, p99.low, p99.high, p99.status) == (pytest.approx(99.01), 97.0, None,
                                                             FAILED)
    assert p99.message == "p99 latency of fast: 99 ms (95% CI 97-?) > 50.0 ms"
    assert all(c.unit == "ms" and c.vs is None for c in checks)


@pytest.mark.parametrize("budget,status,passed", [(59.0, PASSED, True), (41.0, FAILED, False),
                                                  (42.0, INCONCLUSIVE, False),
                                                  (50.5, INCONCLUSIVE, True)])
def test_latency_decision_boundaries(budget, status, passed):
    """Pass needs high <= budget, fail needs low > budget (p50 of 1..100: [42, 59])."""
    (check,) = evaluate(spec("latency", p50_ms=budget), measurement("fast", HUNDRED), None, CPU)
    assert (check.status, check.passed) == (status, passed)


def test_latency_mean():
    """Mean 3, sd sqrt(2.5), half-width 1.959964 * sqrt(2.5) / sqrt(5)."""
    m = measurement("v", [1.0, 2.0, 3.0, 4.0, 5.0])
    (check,) = evaluate(spec("latency", mean_ms=5), m, None, CPU)
    half = 1.959964 * math.sqrt(2.5) / math.sqrt(5)
    assert check.measured == 3.0
    assert check.low == pytest.approx(3.0 - half, abs=1e-6)
    assert check.high == pytest.approx(3.0 + half, abs=1e-6)
    assert check.status == PASSED and check.metric == "mean_ms"
    assert check.message == "mean latency of v: 3 ms (95% CI 1.61-4.39) <= 5.0 ms"


def test_latency_mean_of_constant_samples_is_exact():
    (check,) = evaluate(spec("latency", mean_ms=2.0), measurement("v", [2.0] * 4), None, CPU)
    assert (check.measured, check.low, check.high, check.status) == (2.0, 2.0, 2.0, PASSED)


# --- throughput ----------------------------------------------------------------------------


def test_throughput_uses_items():
    m = measurement("v", [2.0] * 10, items=32)
    (check,) = evaluate(spec("throughput", min=10000), m, None, CPU)
    assert (check.measured, check.low, check.high) == (16000.0, 16000.0, 16000.0)
    assert check.status == PASSED and check.unit == "items/s"
    assert check.message == ("throughput of v: 1.6e+04 items/s (95% CI 1.6e+04-1.6e+04) "
                             ">= 10000.0 items/s")
    (check,) = evaluate(spec("throughput", min=20000), m, None, CPU)
    assert check.status == FAILED
    assert check.message.endswith("< 20000.0 items/s")


def test_throughput_interval_from_median_interval():
    """n=10: one-sided 95% bounds on the median are [2 ms, 9 ms] -> [889, 4000] items/s
    for 8 items."""
    m = measurement("v", [float(x) for x in range(1, 11)], items=8)
    (check,) = evaluate(spec("throughput", min=1000), m, None, CPU)
    assert check.measured == pytest.approx(8000 / 5.5)
    assert (check.low, check.high) == (pytest.approx(8000 / 9), 4000.0)
    assert check.status == INCONCLUSIVE and check.passed
    assert check.message == ("throughput of v: 1455 items/s (95% CI 888.9-4000) >= 1000.0 "
                             "items/s (inconclusive: interval straddles the budget)")


# --- single-value budgets ------------------------------------------------------------------


def test_memory():
    m = measurement("v", peak_memory_mb=100.0)
    (check,) = evaluate(spec("memory", max_mb=200), m, None, CPU)
    assert check.status == PASSED
    assert (check.measured, check.low, check.high, check.unit) == (100.0, 100.0, 100.0, "MB")
    assert check.message == "peak memory of v: 100 MB <= 200.0 MB"
    (check,) = evaluate(spec("memory", max_mb=64), m, None, CPU)
    assert check.status == FAILED
    assert check.message == "peak memory of v: 100 MB > 64.0 MB"


def test_memory_not_measured_is_skipped():
    (check,) = evaluate(spec("memory", max_mb=200), measurement("v"), None, CPU)
    assert check.status == SKIPPED and check.measured is None
    assert check.message == "peak memory of v: not measured here"


def test_cold_start_is_prepare_plus_first_call():
    m = measurement("v", prepare_s=0.5, first_call_ms=250.0)
    (check,) = evaluate(spec("cold_start", max_s=1.0), m, None, CPU)
    assert (check.measured, check.status) == (0.75, PASSED)
    assert check.message == "cold start of v: 0.75 s <= 1.0 s"
    (check,) = evaluate(spec("cold_start", max_s=0.5), m, None, CPU)
    assert check.status == FAILED and check.message == "cold start of v: 0.75 s > 0.5 s"


def test_cold_start_without_prepare_time():
    m = measurement("v", first_call_ms=250.0)
    (check,) = evaluate(spec("cold_start", max_s=1.0), m, None, CPU)
    assert check.measured == 0.25


def test_cold_start_not_measured_is_skipped():
    (check,) = evaluate(spec("cold_start", max_s=1.0), measurement("v", prepare_s=1.0), None, CPU)
    assert check.status == SKIPPED and check.message == "cold start of v: not measured"


def test_energy():
    m = measurement("v", extra={"energy_mj_per_call": 3.0})
    (check,) = evaluate(spec("energy", max_mj=5), m, None, CPU)
    assert (check.measured, check.status, check.unit) == (3.0, PASSED, "mJ")
    assert check.message == "energy per call of v: 3 mJ <= 5.0 mJ"


def test_energy_and_roofline_skipped_when_missing():
    (energy,) = evaluate(spec("energy", max_mj=5), measurement("v"), None, CPU)
    assert energy.status == SKIPPED
    assert energy.message == "energy per call of v: needs NVML energy counters (an NVIDIA GPU)"
    (roof,) = evaluate(spec("roofline", min_fraction=0.5), measurement("v"), None, CPU)
    assert roof.status == SKIPPED
    assert roof.message.startswith("roofline fraction of v: declare bytes= or flops=")


def test_roofline_higher_is_better():
    m = measurement("v", extra={"roofline_fraction": 0.6})
    (check,) = evaluate(spec("roofline", min_fraction=0.5), m, None, CPU)
    assert (check.measured, check.status, check.unit) == (0.6, PASSED, "")
    (check,) = evaluate(spec("roofline", min_fraction=0.7), m, None, CPU)
    assert check.status == FAILED
    assert check.message.startswith("roofline fraction of v: 0.6 < 0.7")


def test_roofline_message_has_no_trailing_space():
    m = measurement("v", extra={"roofline_fraction": 0.6})
    (check,) = evaluate(spec("roofline", min_fraction=0.5), m, None, CPU)
    assert check.message == "roofline fraction of v: 0.6 >= 0.5"


# --- accuracy -------------------------------------------------------------------------------

REF_OUT = np.arange(6, dtype=np.float32).reshape(2, 3)


def with_outputs(name, output, after=None):
    m = measurement(name)
    m.output = output
    m.output_after = output if after is None else after
    return m


def test_accuracy_pass():
    ref = with_outputs("ref", REF_OUT)
    cand = with_outputs("fast", REF_OUT + np.float32(1e-5))
    (check,) = evaluate(spec("accuracy", vs="ref"), cand, ref, CPU)
    assert check.status == PASSED and check.passed
    assert (check.kind, check.variant, check.vs, check.metric) == \
        ("accuracy", "fast", "ref", "max_abs_error")
    assert check.budget == 1e-4  # the fp32 default atol
    assert check.measured == pytest.approx(1e-5, rel=0.1)
    assert check.message.startswith("outputs of fast match ref: max abs error ")
    assert check.detail["elements"] == 6 and check.detail["mismatched"] == 0


def test_accuracy_fail_names_error_and_location():
    out = REF_OUT.copy()
    out[1, 2] += 0.5
    ref, cand = with_outputs("ref", REF_OUT), with_outputs("fast", out)
    (check,) = evaluate(spec("accuracy", vs="ref"), cand, ref, CPU)
    assert check.status == FAILED and not check.passed
    assert check.measured == 0.5
    assert check.detail["where"] == "output at (1, 2)"
    assert check.detail["mismatched"] == 1
    assert check.message == ("outputs of fast differ from ref: max abs error 0.5, max rel error "
                             "0.1 at output at (1, 2), relative L2 error 0.0674; 1 of 6 "
                             "elements outside atol=0.0001 rtol=0.0001")


def test_accuracy_atol_from_the_marker():
    out = REF_OUT + np.float32(0.25)
    ref, cand = with_outputs("ref", REF_OUT), with_outputs("fast", out)
    (loose,) = evaluate(spec("accuracy", vs="ref", atol=0.5, rtol=0), cand, ref, CPU)
    assert loose.status == PASSED and loose.budget == 0.5
    (tight,) = evaluate(spec("accuracy", vs="ref", atol=0.1, rtol=0), cand, ref, CPU)
    assert tight.status == FAILED
    assert "6 of 6 elements outside atol=0.1 rtol=0" in tight.message


def test_accuracy_tolerance_argument_is_the_default():
    out = REF_OUT + np.float32(0.005)
    ref, cand = with_outputs("ref", REF_OUT), with_outputs("fast", out)
    (fp32,) = evaluate(spec("accuracy", vs="ref"), cand, ref, CPU)
    (fp16,) = evaluate(spec("accuracy", vs="ref"), cand, ref, CPU, tolerance=TOLERANCES["fp16"])
    assert (fp32.status, fp16.status) == (FAILED, PASSED)


def test_accuracy_structure_mismatch():
    ref = with_outputs("ref", REF_OUT)
    cand = with_outputs("fast", (REF_OUT, REF_OUT))
    (check,) = evaluate(spec("accuracy", vs="ref"), cand, ref, CPU)
    assert check.status == FAILED and check.measured is None
    assert check.message.startswith("outputs of fast do not match ref: output structure differs")


def test_accuracy_checks_output_after_timing():
    """Right on the first call, wrong after timing (e.g. a mutated input)."""
    ref = with_outputs("ref", REF_OUT)
    cand = with_outputs("fast", REF_OUT, after=REF_OUT * 2)
    (check,) = evaluate(spec("accuracy", vs="ref"), cand, ref, CPU)
    assert check.status == FAILED
    assert check.message.startswith("outputs of fast after timing differ from ref:")


def test_accuracy_check_reports_worst_pair():
    near, far = REF_OUT + np.float32(1e-6), REF_OUT + np.float32(5e-5)
    check = accuracy_check("fast", "ref", [("", near, REF_OUT), (" after", far, REF_OUT)],
                           1e-4, 0.0)
    assert check.status == PASSED
    assert check.measured == pytest.approx(5e-5, rel=0.1)
    assert check.vs == "ref"


# --- gating, evaluate_all ------------------------------------------------------------------


def test_gate_on_accuracy_fails_a_fast_but_wrong_variant():
    naive, fused = exact_pair()
    naive.output = naive.output_after = REF_OUT
    fused.output = fused.output_after = REF_OUT + 1
    checks = evaluate_all([spec("speedup", min=1.5, vs="naive"), spec("accuracy", vs="naive")],
                          {"naive": naive, "fused": fused}, CPU)
    speed, acc = checks
    assert acc.status == FAILED
    assert speed.status == FAILED and not speed.passed
    assert speed.point_passed is False
    assert speed.to_dict()["detail"] == {"point_passed": False}
    assert speed.message == ("speedup of fused vs naive: 2.00x (95% CI 2.00-2.00) >= 1.5x "
                             "-- not counted: outputs of fused are wrong")


def test_gate_on_accuracy_leaves_other_kinds_and_skips_alone():
    checks = [
        Check(kind="accuracy", variant="fast", vs="ref", budget=1e-4, measured=1.0, low=1.0,
              high=1.0, status=FAILED, message="wrong"),
        Check(kind="memory", variant="fast", budget=10.0, measured=5.0, low=5.0, high=5.0,
              unit="MB", status=PASSED, message="mem"),
        Check(kind="latency", variant="fast", status=SKIPPED, message="skip"),
        Check(kind="latency", variant="ref", budget=10.0, measured=5.0, low=4.0, high=6.0,
              unit="ms", status=PASSED, message="ok", point_passed=True),
    ]
    gate_on_accuracy(checks)
    assert [c.status for c in checks] == [FAILED, PASSED, SKIPPED, PASSED]
    assert [c.message for c in checks] == ["wrong", "mem", "skip", "ok"]


def test_evaluate_all_passes_and_uses_variant_tolerances():
    naive, fused = exact_pair()
    naive.output = naive.output_after = REF_OUT
    fused.output = fused.output_after = REF_OUT + np.float32(0.05)
    specs = [spec("speedup", min=2.0, vs="naive"), spec("accuracy"), spec("latency", p50_ms=6.0)]
    measurements = {"naive": naive, "fused": fused}
    strict = evaluate_all(specs, measurements, CPU)
    assert [(c.kind, c.status) for c in strict] == [("speedup", FAILED), ("accuracy", FAILED),
                                                    ("latency", FAILED)]
    loose = evaluate_all(specs, measurements, CPU, tolerances={"fused": (0.1, 0.0)})
    assert [(c.kind, c.variant, c.status) for c in loose] == [
        ("speedup", "fused", PASSED), ("accuracy", "fused", PASSED), ("latency", "fused", PASSED)]
    assert loose[1].vs == "naive"


def test_evaluate_all_raises_role_error():
    with pytest.raises(RoleError):
        evaluate_all([spec("speedup", min=2.0, vs="missing")], {"a": measurement("a")}, CPU)


# --- Check ----------------------------------------------------------------------------------


def test_check_passed_and_to_dict():
    base = dict(kind="latency", variant="v", vs=None, budget=1.0, measured=0.5, low=0.4,
                high=0.6, unit="ms", message="m")
    assert Check(status=PASSED, **base).passed
    assert Check(status=SKIPPED, **base).passed
    assert not Check(status=FAILED, **base).passed
    assert not Check(status=INCONCLUSIVE, **base).passed
    assert Check(status=INCONCLUSIVE, point_passed=True, **base).passed
    d = Check(status=FAILED, test="t::x", **base).to_dict()
    assert d["passed"] is False and d["test"] == "t::x" and d["status"] == FAILED
    assert set(base) <= set(d)


def test_undecided():
    base = dict(kind="latency", variant="v", vs=None, budget=1.0, measured=0.5, low=0.4,
                high=0.6, unit="ms", message="m")
    assert not undecided([Check(status=PASSED, **base), Check(status=FAILED, **base)])
    assert undecided([Check(status=PASSED, **base), Check(status=INCONCLUSIVE, **base)])
    assert not undecided([])


# --- several eager references (the model path with several modules or inputs) --------------

def own_refs():
    refs = {"ort-bs64": "pytorch-ort-bs64", "ort-bs1": "pytorch-ort-bs1"}
    return (["pytorch-ort-bs64", "ort-bs64", "pytorch-ort-bs1", "ort-bs1"],
            ["pytorch-ort-bs64", "pytorch-ort-bs1"], refs,
            {"pytorch": ["pytorch-ort-bs64", "pytorch-ort-bs1"]})


def test_vs_pytorch_means_the_candidates_own_reference():
    variants, references, own, aliases = own_refs()
    s = spec("speedup", min=1.0, vs="pytorch", of="ort-bs1")
    assert assign_roles([s], variants, references, own, aliases) == [
        (s, "ort-bs1", "pytorch-ort-bs1")]


def test_accuracy_without_vs_uses_the_candidates_own_reference():
    variants, references, own, aliases = own_refs()
    acc = spec("accuracy", of="ort-bs64")
    assert assign_roles([acc], variants, references, own, aliases) == [
        (acc, "ort-bs64", "pytorch-ort-bs64")]


def test_an_ambiguous_vs_lists_the_references():
    variants, references, own, aliases = own_refs()
    with pytest.raises(RoleError) as info:
        assign_roles([spec("speedup", min=1.0, vs="pytorch")], variants, references, own,
                     aliases)
    assert str(info.value) == (
        "hwopt.speedup(min=1.0): vs='pytorch' is ambiguous: the test has 2 references, one "
        "per module and inputs: 'pytorch-ort-bs64' (of ort-bs64), 'pytorch-ort-bs1' (of "
        "ort-bs1); pass of=<candidate> to compare it with its own, or vs=<one of them>")


def test_reported_speedups_pair_each_candidate_with_its_own_reference():
    big_ref, small_ref = measurement("pytorch-ort-bs64"), measurement("pytorch-ort-bs1")
    big = measurement("ort-bs64", extra={"reference": "pytorch-ort-bs64"})
    small = measurement("ort-bs1", extra={"reference": "pytorch-ort-bs1"})
    ms = {m.name: m for m in (big_ref, big, small_ref, small)}
    found = reported_speedups(ms, ["pytorch-ort-bs64", "pytorch-ort-bs1"], [])
    assert {(c.variant, c.vs) for c in found} == {("ort-bs64", "pytorch-ort-bs64"),
                                                  ("ort-bs1", "pytorch-ort-bs1")}
