"""Unit tests for pytest_hwopt.core.stats: percentiles, intervals, ratios, Mann-Whitney."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_hwopt.core import stats

ARRAYS = [
    [5.0],
    [3.0, 1.0],
    [1.0, 2.0, 3.0, 4.0],
    [0.5, 9.25, 3.0, 3.0, 7.5, -2.0, 11.0],
    [float(x) for x in range(1, 101)],
    [0.013, 0.011, 0.012, 0.019, 0.0105, 0.011, 0.5, 0.0121, 0.0118],
]
QS = [0, 1, 5, 25, 33.3, 50, 75, 90, 95, 99, 100]


# --- percentile, median, mean, iqr -----------------------------------------------------


@pytest.mark.parametrize("samples", ARRAYS, ids=lambda a: f"n{len(a)}")
@pytest.mark.parametrize("q", QS)
def test_percentile_matches_numpy_linear_default(samples, q):
    assert stats.percentile(samples, q) == pytest.approx(np.percentile(samples, q),
                                                         rel=1e-12, abs=1e-15)


def test_percentile_exact_interpolation():
    samples = [10.0, 20.0, 30.0, 40.0]
    # position (n-1)*q/100 = 3*0.25 = 0.75 -> 10 + 0.75*10
    assert stats.percentile(samples, 25) == 17.5
    assert stats.percentile(samples, 0) == 10.0
    assert stats.percentile(samples, 100) == 40.0
    assert stats.percentile([40.0, 10.0, 30.0, 20.0], 50) == 25.0  # order of input ignored


def test_percentile_does_not_modify_input():
    samples = [3.0, 1.0, 2.0]
    stats.percentile(samples, 50)
    assert samples == [3.0, 1.0, 2.0]


@pytest.mark.parametrize("q", [-0.1, 100.1, 1000])
def test_percentile_rejects_q_out_of_range(q):
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        stats.percentile([1.0, 2.0], q)


def test_percentile_of_nothing_raises():
    with pytest.raises(ValueError, match="no samples"):
        stats.percentile([], 50)


def test_median_mean_iqr_exact():
    samples = [1.0, 2.0, 3.0, 4.0, 100.0]
    assert stats.median(samples) == 3.0
    assert stats.median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert stats.mean(samples) == 22.0
    assert stats.mean([0.1] * 10) == 0.1  # fsum: no accumulated rounding
    assert stats.iqr(samples) == 4.0 - 2.0
    assert stats.iqr([7.0]) == 0.0


def test_mean_of_nothing_raises():
    with pytest.raises(ValueError, match="no samples"):
        stats.mean([])


# --- z_value -----------------------------------------------------------------------------


def test_z_value_known_quantiles():
    assert stats.z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert stats.z_value(0.99) == pytest.approx(2.575829, abs=1e-6)
    assert stats.z_value(0.5) == pytest.approx(0.674490, abs=1e-6)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_z_value_rejects_confidence_outside_open_unit_interval(confidence):
    with pytest.raises(ValueError, match="confidence"):
        stats.z_value(confidence)


# --- percentile_bounds, samples_for_bound ---------------------------------------------------


HUNDRED = [float(x) for x in range(1, 101)]


def binomial_tail(n, p, k):
    """P(K >= k) for K ~ Binomial(n, p), exactly (math.comb)."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


def test_bounds_are_the_order_statistics_of_the_exact_binomial_tails():
    # n=100, p=0.5: P(K >= 59) = 0.044 <= 0.05 < P(K >= 58) = 0.067: the 59th sample is the
    # upper bound, and by symmetry the 42nd the lower one
    assert binomial_tail(100, 0.5, 59) <= 0.05 < binomial_tail(100, 0.5, 58)
    assert stats.percentile_bounds(HUNDRED, 50) == (42.0, 59.0)
    # p=0.95: P(K >= 99) = 0.037 <= 0.05 < P(K >= 98) = 0.118
    assert binomial_tail(100, 0.95, 99) <= 0.05 < binomial_tail(100, 0.95, 98)
    assert stats.percentile_bounds(HUNDRED, 95) == (91.0, 99.0)


@pytest.mark.parametrize("n", [5, 20, 59, 60, 137, 300])
@pytest.mark.parametrize("q", [50, 90, 95, 99])
def test_bounds_agree_with_the_binomial_definition(n, q):
    """high = X(u), u the smallest rank with P(K >= u) <= 5%; low = X(l), l the largest
    rank with P(K <= l - 1) <= 5%; None where no rank qualifies."""
    p, samples = q / 100, [float(x) for x in range(1, n + 1)]
    uppers = [u for u in range(1, n + 1) if binomial_tail(n, p, u) <= 0.05]
    lowers = [r for r in range(1, n + 1) if 1 - binomial_tail(n, p, r) <= 0.05]
    low, high = stats.percentile_bounds(samples, q)
    assert high == (float(min(uppers)) if uppers else None)
    assert low == (float(max(lowers)) if lowers else None)


def test_an_upper_bound_on_p95_needs_59_samples():
    """The largest sample bounds p95 from above with probability 1 - 0.95**n:
    0.9515 at n = 59, 0.9490 at n = 58."""
    assert 1 - 0.95**59 >= 0.95 > 1 - 0.95**58
    assert stats.percentile_bounds(HUNDRED[:58], 95)[1] is None
    assert stats.percentile_bounds(HUNDRED[:59], 95)[1] == 59.0
    assert stats.samples_for_bound(95, 0.95) == 59


@pytest.mark.parametrize(("q", "confidence", "upper", "lower"), [
    (50, 0.95, 5, 5), (90, 0.95, 29, 2), (95, 0.95, 59, 1), (99, 0.95, 299, 1),
    (95, 0.99, 90, 2), (99, 0.9, 230, 1)])
def test_samples_for_bound(q, confidence, upper, lower):
    assert stats.samples_for_bound(q, confidence, upper=True) == upper
    assert stats.samples_for_bound(q, confidence, upper=False) == lower
    p = q / 100
    assert p**upper <= 1 - confidence < p ** (upper - 1)


def test_four_samples_bound_no_tail_percentile():
    """The issue's case: four samples of a call that is slow one time in ten; the 95%
    bound on p95 cannot come from them (no clamping at the largest sample)."""
    assert stats.percentile_bounds([500.2, 500.1, 500.3, 500.2], 95) == (500.2, None)
    assert stats.percentile_bounds([1.0, 2.0, 3.0, 4.0], 50) == (None, None)


def test_bounds_cover_the_true_percentile_as_often_as_promised():
    """Simulated: 2000 sets of 80 exponential samples; the upper bound on p95 lies above
    the true p95 (ln 20) in at least 95% of them (exact binomial, so at least 95% up to
    simulation noise: with 80 samples it is the largest, which holds with 1 - 0.95**80 =
    98.3%)."""
    rng = np.random.default_rng(0)
    true_p95 = math.log(20.0)
    covered = 0
    for _ in range(2000):
        high = stats.percentile_bounds(rng.exponential(size=80).tolist(), 95)[1]
        covered += high is not None and high >= true_p95
    assert covered / 2000 >= 0.95


def test_bounds_widen_with_confidence():
    widths = []
    for confidence in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        low, high = stats.percentile_bounds(HUNDRED, 50, confidence)
        widths.append(high - low)
    assert widths == sorted(widths)
    assert widths[0] < widths[-1]


def test_bounds_of_many_samples_are_quick_and_tight():
    samples = [float(x) for x in range(100_000)]
    low, high = stats.percentile_bounds(samples, 99)
    assert 98_850 < low < 99_000 < high < 99_150


def test_bounds_reject_bad_input():
    with pytest.raises(ValueError, match="no samples"):
        stats.percentile_bounds([], 50)
    with pytest.raises(ValueError, match=r"q in \(0, 100\)"):
        stats.percentile_bounds([1.0], 100)
    with pytest.raises(ValueError, match="confidence"):
        stats.samples_for_bound(95, 1.0)


# --- ratio_of_medians ---------------------------------------------------------------------


NUM = [10.0, 10.4, 9.8, 10.1, 11.0, 9.9, 10.2, 10.0, 10.3]
DEN = [5.0, 5.3, 4.7, 5.1, 5.2, 4.9, 5.0, 5.4, 4.8]


def test_ratio_of_medians_point_estimate_is_exact():
    ratio, _, _ = stats.ratio_of_medians(NUM, DEN)
    assert ratio == stats.median(NUM) / stats.median(DEN) == 10.1 / 5.0


def test_ratio_of_medians_interval_contains_point():
    ratio, low, high = stats.ratio_of_medians(NUM, DEN)
    assert low <= ratio <= high
    assert low < high


def test_ratio_of_medians_deterministic_for_a_seed():
    assert stats.ratio_of_medians(NUM, DEN, seed=7) == stats.ratio_of_medians(NUM, DEN, seed=7)
    assert stats.ratio_of_medians(NUM, DEN) == stats.ratio_of_medians(NUM, DEN, seed=0)


def test_ratio_of_medians_seed_changes_interval_not_point():
    a = stats.ratio_of_medians(NUM, DEN, seed=1)
    b = stats.ratio_of_medians(NUM, DEN, seed=2)
    assert a[0] == b[0]
    assert a[1:] != b[1:]


@pytest.mark.parametrize("n", [3, 4, 9, 10])
def test_ratio_of_medians_paired_resampling_cancels_drift(n):
    """Rounds drift wildly, but each round's numerator is exactly twice its denominator.

    Resampling rounds as pairs keeps that ratio in every bootstrap replicate, so
    the interval collapses to exactly [2, 2]; unpaired resampling would not.
    """
    den = [1.0 + 3.7 * i + (i % 3) * 11.0 for i in range(n)]
    num = [2.0 * d for d in den]
    assert stats.ratio_of_medians(num, den) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("n", [1, 2])
def test_ratio_of_medians_too_few_rounds_has_unbounded_interval(n):
    num, den = [6.0, 8.0][:n], [2.0, 4.0][:n]
    ratio, low, high = stats.ratio_of_medians(num, den)
    assert ratio == stats.median(num) / stats.median(den)
    assert (low, high) == (0.0, math.inf)


@pytest.mark.parametrize("num,den", [([], []), ([1.0, 2.0], [1.0]), ([1.0], [1.0, 2.0])])
def test_ratio_of_medians_rejects_unequal_or_empty(num, den):
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        stats.ratio_of_medians(num, den)


def test_ratio_of_medians_wider_at_higher_confidence():
    _, lo90, hi90 = stats.ratio_of_medians(NUM, DEN, confidence=0.90)
    _, lo99, hi99 = stats.ratio_of_medians(NUM, DEN, confidence=0.99)
    assert lo99 <= lo90 and hi90 <= hi99


# --- mann_whitney_p -----------------------------------------------------------------------


def _two_sided_p(u: float, na: int, nb: int, var: float) -> float:
    z = (u - na * nb / 2.0) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2.0))


def test_mann_whitney_no_ties_hand_computed():
    # U = 0, mean 4.5, variance 3*3/12 * 7 = 5.25
    expected = _two_sided_p(0.0, 3, 3, 5.25)
    assert stats.mann_whitney_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(expected,
                                                                                    rel=1e-12)
    assert expected == pytest.approx(0.049535, abs=1e-6)


def test_mann_whitney_ties_hand_computed():
    """Ranks: 1 | 2,2,2 -> 3 | 3,3 -> 5.5 | 7 | 8; rank sum of a = 12.5, U = 2.5.

    Tie term: (27-3) + (8-2) = 30, variance = 16/12 * (9 - 30/56).
    """
    a, b = [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]
    expected = _two_sided_p(2.5, 4, 4, 16 / 12 * (9 - 30 / 56))
    assert stats.mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-12)


def test_mann_whitney_is_symmetric():
    a, b = [1.0, 2.5, 2.5, 7.0, 3.0], [2.0, 8.0, 9.0, 2.5]
    assert stats.mann_whitney_p(a, b) == pytest.approx(stats.mann_whitney_p(b, a), rel=1e-12)


def test_mann_whitney_identical_samples_give_p_one():
    assert stats.mann_whitney_p([3.0, 3.0, 3.0], [3.0, 3.0]) == 1.0
    assert stats.mann_whitney_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("a,b", [([], [1.0]), ([1.0], []), ([], [])])
def test_mann_whitney_needs_both_sides(a, b):
    with pytest.raises(ValueError, match="both sides"):
        stats.mann_whitney_p(a, b)


@pytest.mark.parametrize("a,b", [
    ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
    ([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]),
    ([0.3, 1.2, 5.5, 2.2, 2.2, 9.0, 0.1], [3.3, 2.2, 8.8, 7.1, 6.0]),
    ([float(x % 7) for x in range(30)], [float(x % 5) + 1.5 for x in range(25)]),
])
def test_mann_whitney_matches_scipy(a, b):
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic",
                                        use_continuity=False).pvalue
    assert stats.mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-9)
