"""Combining per-process estimates: the t quantile, the interval, the re-judged check."""

from __future__ import annotations

import math
import random

import pytest

from pytest_hwopt.core.checks import FAILED, INCONCLUSIVE, PASSED, Check
from pytest_hwopt.core.combine import (
    Reading,
    combine,
    combined_check,
    t_quantile,
    t_two_sided,
)

# ---- Student's t -------------------------------------------------------------------------

# two-sided quantiles from published tables (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
TABLE = [(0.95, 1, 12.706), (0.95, 2, 4.303), (0.95, 3, 3.182), (0.95, 4, 2.776),
         (0.95, 10, 2.228), (0.95, 30, 2.042), (0.99, 3, 5.841), (0.99, 5, 4.032),
         (0.90, 2, 2.920), (0.90, 7, 1.895), (0.80, 1, 3.078)]


@pytest.mark.parametrize(("confidence", "df", "expected"), TABLE)
def test_t_quantile_matches_the_tables(confidence, df, expected):
    assert t_quantile(confidence, df) == pytest.approx(expected, abs=1e-3)


def test_t_distribution_closed_forms_and_limit():
    # df=1 is the Cauchy distribution; df=2 has P(|T|<=t) = t / sqrt(2 + t^2)
    assert t_two_sided(1.0, 1) == pytest.approx(0.5)
    for t in (0.3, 1.0, 4.0):
        assert t_two_sided(t, 2) == pytest.approx(t / math.sqrt(2 + t * t))
    # many degrees of freedom: the normal quantile
    assert t_quantile(0.95, 2000) == pytest.approx(1.96, abs=2e-3)
    assert t_two_sided(0.0, 5) == 0.0


def test_t_rejects_bad_arguments():
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_two_sided(1.0, 0)
    with pytest.raises(ValueError, match="confidence"):
        t_quantile(1.0, 3)


# ---- the interval across processes ---------------------------------------------------------

def test_combine_is_a_geometric_mean_with_a_t_interval_on_logs():
    combined = combine([2.0, 0.5])
    assert combined.estimate == pytest.approx(1.0)  # 2x and 0.5x are equally far from 1x
    values = [3.0, 3.3, 2.9, 3.1]
    combined = combine(values, 0.95)
    logs = [math.log(v) for v in values]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    half = 3.1824 * sd / 2
    assert combined.estimate == pytest.approx(math.exp(mean))
    assert combined.low == pytest.approx(math.exp(mean - half), rel=1e-4)
    assert combined.high == pytest.approx(math.exp(mean + half), rel=1e-4)
    assert combined.count == 4 and combined.values == tuple(values)


def test_agreeing_processes_give_a_narrow_interval_disagreeing_ones_a_wide_one():
    same = combine([3.0, 3.0, 3.0])
    assert same.low == same.high == pytest.approx(3.0)
    apart = combine([2.0, 4.0, 3.0])
    assert apart.low < 2.0 and apart.high > 4.0


def test_combine_needs_two_positive_estimates():
    with pytest.raises(ValueError, match="at least 2"):
        combine([3.0])
    with pytest.raises(ValueError, match="positive"):
        combine([3.0, 0.0])


def test_the_interval_covers_a_bias_that_lasts_each_process():
    """Each simulated process carries its own lasting bias (log-normal, sd 10%) on top of
    a narrow within-run noise: over many experiments of 4 processes, the 95% interval
    holds the true value about 95% of the time; an interval from one process alone, as
    narrow as its rounds make it, would hold it far less often."""
    rng = random.Random(7)
    truth, trials, covered, one_process = 3.0, 4000, 0, 0
    for _ in range(trials):
        estimates = [truth * math.exp(rng.gauss(0, 0.10) + rng.gauss(0, 0.01))
                     for _ in range(4)]
        c = combine(estimates, 0.95)
        covered += c.low <= truth <= c.high
        within = estimates[0] * math.exp(-1.96 * 0.01), estimates[0] * math.exp(1.96 * 0.01)
        one_process += within[0] <= truth <= within[1]
    assert 0.93 <= covered / trials <= 0.97
    assert one_process / trials < 0.3


# ---- a check judged again --------------------------------------------------------------------

def speedup_check(**changes) -> Check:
    fields = {"kind": "speedup", "variant": "fast", "vs": "slow", "status": INCONCLUSIVE,
              "message": "speedup of fast vs slow: 3.01x (95% CI 2.90-3.20) >= 3.0x "
                         "(inconclusive: interval straddles the budget)",
              "budget": 3.0, "measured": 3.01, "low": 2.9, "high": 3.2, "unit": "x",
              "metric": "min", "point_passed": True, "reason": "interval straddles the budget"}
    return Check(**{**fields, **changes})


def test_clear_processes_decide_a_straddling_check():
    check = speedup_check(budget=2.0, measured=2.1, low=1.9, high=2.4)
    out = combined_check(check, [Reading(2.2, seed=1, seconds=1.5), Reading(2.15, seed=2),
                                 Reading(2.05, seed=3)])
    assert out.status is PASSED and out.point_passed is True and out.reason == ""
    assert out.measured == pytest.approx(combine([2.1, 2.2, 2.15, 2.05]).estimate)
    assert out.low > 2.0
    record = out.detail["processes"]
    assert record["count"] == 4 and record["workers"] == 3
    assert record["values"] == [2.1, 2.2, 2.15, 2.05]
    assert record["seeds"] == [1, 2, 3] and record["seconds"] == [1.5, None, None]
    assert record["failures"] == []
    assert record["in_run"] == {"measured": 2.1, "low": 1.9, "high": 2.4,
                                "status": "inconclusive"}
    assert "across 4 processes" in out.message and ">= 2.0x" in out.message


def test_processes_that_disagree_stay_inconclusive_with_a_reason():
    out = combined_check(speedup_check(), [Reading(2.6), Reading(3.5), Reading(2.9)])
    assert out.status is INCONCLUSIVE
    assert out.reason == "the interval across 4 processes straddles the budget"
    assert out.reason in out.message


def test_a_lasting_bias_in_the_run_no_longer_passes():
    """The in-run estimate read a false pass; three fresh processes read the truth."""
    check = speedup_check(status=PASSED, measured=5.7, low=4.6, high=6.0, point_passed=True,
                          reason="")
    out = combined_check(check, [Reading(2.95), Reading(3.0), Reading(2.97)])
    assert out.detail["processes"]["values"][0] == 5.7
    assert out.status is INCONCLUSIVE  # one wild process widens the interval...
    out = combined_check(speedup_check(budget=4.0), [Reading(2.95), Reading(3.0),
                                                      Reading(2.97), Reading(3.05)])
    assert out.status is FAILED and not out.passed  # ...and agreeing ones decide


def test_lower_is_better_kinds_keep_their_direction():
    check = Check(kind="latency", variant="fast", status=INCONCLUSIVE, message="m",
                  budget=10.0, measured=8.2, low=7.0, high=11.0, unit="ms", metric="p95_ms",
                  point_passed=True)
    out = combined_check(check, [Reading(8.0), Reading(8.1), Reading(7.9)])
    assert out.status is PASSED
    assert "p95 latency of fast" in out.message and "<= 10.0 ms" in out.message


def test_failed_workers_leave_the_check_as_it_was():
    check = speedup_check()
    out = combined_check(check, [Reading(None, "timed out after 60 s"),
                                 Reading(None, "wrote no results (exit code 2)")])
    assert (out.status, out.measured, out.low, out.high, out.point_passed, out.reason) == (
        check.status, check.measured, check.low, check.high, check.point_passed, check.reason)
    assert out.detail["processes"]["failures"] == [
        "worker 1: timed out after 60 s", "worker 2: wrote no results (exit code 2)"]
    assert out.detail["processes"]["count"] == 1
    assert out.message.startswith(check.message) and "failed" in out.message


def test_some_failed_workers_are_named_and_the_rest_count():
    out = combined_check(speedup_check(budget=2.0),
                         [Reading(3.0), Reading(None, "crashed"), Reading(3.1)])
    assert out.status is PASSED
    assert out.detail["processes"]["count"] == 3
    assert out.detail["processes"]["failures"] == ["worker 2: crashed"]
    assert "1 of 3 worker processes failed" in out.message


def test_checks_without_a_figure_are_left_alone():
    check = speedup_check(measured=None, low=None, high=None)
    assert combined_check(check, [Reading(3.0)]) is check
    check = speedup_check(budget=None)
    assert combined_check(check, [Reading(3.0)]) is check
    check = speedup_check(kind="not_a_kind")
    assert combined_check(check, [Reading(3.0)]) is check
