"""Change points in run series, a new run against its history, and the series of a store."""

from __future__ import annotations

import random

import pytest

from pytest_hwopt.results import changepoints, history, series
from pytest_hwopt.results.history import Point, RunInfo

pytest.importorskip("ruptures", reason="change points need the 'history' extra (ruptures)")


def noisy(n: int, level: float = 1.0, spread: float = 0.02, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [level * rng.uniform(1 - spread, 1 + spread) for _ in range(n)]


@pytest.mark.parametrize("seed", range(10))
def test_a_steady_series_has_no_change_point(seed):
    assert changepoints.detect(noisy(12, seed=seed)) == []


def test_a_step_of_20_percent_at_the_newest_run_shows_at_once():
    values = noisy(6) + [1.2]
    [cp] = changepoints.detect(values)
    assert cp.index == 6 and cp.step == pytest.approx(0.2, abs=0.03) and cp.p < 0.01


def test_a_step_of_50_percent_in_the_middle_is_found_where_it_is():
    values = noisy(5, seed=1) + noisy(5, level=1.5, seed=2)
    [cp] = changepoints.detect(values)
    assert cp.index == 5 and cp.step == pytest.approx(0.5, abs=0.05)


def test_a_step_smaller_than_the_minimum_is_not_a_change():
    values = noisy(6, spread=0.002) + noisy(6, level=1.03, spread=0.002, seed=3)
    assert changepoints.detect(values) == []
    assert changepoints.detect(values, min_step=0.01)[0].index == 6


def test_values_must_be_positive():
    with pytest.raises(ValueError, match="positive, finite"):
        changepoints.detect([1.0, 0.0, 1.0])


def test_a_judgement_needs_three_runs_and_takes_its_limit_from_their_spread():
    assert changepoints.judge([1.0, 1.01], 2.0) is None
    quiet = changepoints.judge(noisy(6, spread=0.01), 1.2)
    assert quiet is not None and quiet.slower and quiet.p < 0.01
    assert 1.05 <= quiet.limit < 1.2
    noisy_history = changepoints.judge(noisy(6, spread=0.3, seed=4), 1.2)
    assert noisy_history is not None and not noisy_history.slower
    assert noisy_history.limit > 1.2  # a spread of 30% cannot tell 20% from noise
    assert changepoints.judge(noisy(6, spread=0.01), 0.8).faster


# ---- series of a store ----------------------------------------------------------------------

def points(times: list[tuple[float, float]]) -> list[Point]:
    """Runs of test_op with a reference "slow" and a candidate "fast" (medians in ms)."""
    out = []
    for n, (slow, fast) in enumerate(times, start=1):
        run = RunInfo(n, f"2026-11-29T10:{n:02d}:00+00:00", f"c{n:04d}", "main", "m1", "h", "t")
        out.append(Point(run, "t.py::test_op", "slow", "fast", slow, (slow,)))
        out.append(Point(run, "t.py::test_op", "fast", "slow", fast, (fast,)))
    return out


def test_a_variant_with_a_reference_has_a_time_and_a_ratio_series():
    found = series.build(points([(10.0, 1.0), (10.0, 1.1)]))
    assert [(s.variant, s.kind, s.label) for s in found] == [
        ("slow", "time", "slow"), ("slow", "ratio", "slow / fast"),
        ("fast", "time", "fast"), ("fast", "ratio", "fast / slow")]
    assert found[3].values == pytest.approx((0.1, 0.11))


def test_a_machine_slower_for_every_variant_is_not_a_regression():
    history = points([(10 * a, b) for a, b in zip(noisy(6, seed=5), noisy(6, seed=6))])
    v = series.verdict(history, "t.py::test_op", "fast", 1.5, "slow", 15.0)
    assert v.time is not None and v.time.slower  # 1.5x slower in absolute time ...
    assert v.ratio is not None and not v.ratio.slower  # ... but so is its reference
    assert not v.regressed and "so the machine is" in v.describe()


def test_a_variant_slower_than_its_reference_and_its_history_regressed():
    history = points([(10 * a, b) for a, b in zip(noisy(6, seed=5), noisy(6, seed=6))])
    v = series.verdict(history, "t.py::test_op", "fast", 1.5, "slow", 10.0)
    assert v.regressed and v.describe().startswith("regression of fast vs history: median")
    assert "over 6 runs" in v.describe() and "within the run vs slow: 1.5" in v.describe()


def test_a_variant_with_too_little_history_is_not_judged():
    v = series.verdict(points([(10.0, 1.0), (10.0, 1.0)]), "t.py::test_op", "fast", 5.0)
    assert not v.judged and not v.regressed
    assert "too little history on this machine: 2 run(s), 3 needed" in v.describe()


def test_the_history_judged_against_starts_at_the_last_change():
    history = points([(10.0, f) for f in noisy(5, seed=7) + noisy(5, level=2.0, seed=8)])
    v = series.verdict(history, "t.py::test_op", "fast", 2.0)
    assert v.time is not None and v.time.runs == 5 and not v.regressed
    assert v.since is not None and v.since.id == 6 and "since the change at run 6" in v.describe()


def test_only_a_slowdown_in_both_series_counts_as_the_newest_slowdown():
    both = series.analyse(series.build(points([(10.0, f) for f in noisy(6) + [1.3]])))
    assert [a.series.label for a in series.slowdowns(both)] == ["fast / slow"]
    machine = series.analyse(series.build(points(
        [(10.0 * f, f) for f in noisy(6) + [1.3]])))
    assert series.slowdowns(machine) == []  # both variants 30% slower: the ratio held


def test_when_a_candidate_slows_its_reference_is_not_called_faster():
    history = points([(10 * a, b) for a, b in zip(noisy(6, seed=5), noisy(6, seed=6))])
    # today "fast" is 3x slower, and "slow" read 20% faster by chance: their ratio moved,
    # but it was "fast" that moved
    slow = series.verdict(history, "t.py::test_op", "slow", 8.0, "fast", 3.0)
    assert slow.ratio is not None and slow.ratio.faster and not slow.improved
    fast = series.verdict(history, "t.py::test_op", "fast", 3.0, "slow", 8.0)
    assert fast.regressed


def test_the_trend_section_holds_this_machines_series_with_their_change_points():
    pts = points([(10.0, f) for f in noisy(6) + [1.5]])
    section = series.trend_section(pts, ["t.py::test_op"], "h.sqlite", "m1")
    fast = next(s for s in section["series"] if s["variant"] == "fast")
    assert fast["runs"] == list(range(1, 8)) and fast["commits"][-1] == "c0007"
    [change] = fast["changes"]
    assert change["index"] == 6 and change["run"] == 7 and change["step"] > 0.4
    assert series.trend_section(pts, ["other.py::t"], "h.sqlite", "m1")["series"] == []


def test_the_trend_figure_draws_a_line_per_variant_and_marks_changes():
    go = pytest.importorskip("plotly.graph_objects")
    from pytest_hwopt.results.trends import trend_figure

    section = series.trend_section(points([(10.0, f) for f in noisy(6) + [1.5]]),
                                   ["t.py::test_op"], "h.sqlite", "m1")
    fig = trend_figure(go, section, [{"test": "t.py::test_op", "name": "test_op"}])
    assert [t.name for t in fig.data] == ["test_op slow", "test_op fast", "test_op fast: change"]
    assert trend_figure(go, {"series": []}, []) is None


def test_holm_controls_the_family_of_series():
    # one p below alpha is not a slowdown among a hundred series ...
    assert changepoints.holm([0.008], 0.01, tests=100) == [False]
    # ... unless it clears alpha / 100
    assert changepoints.holm([5e-5], 0.01, tests=100) == [True]
    # step-down: the smallest against alpha/m, the next against alpha/(m-1) ...
    assert changepoints.holm([0.001, 0.006, 0.02], 0.01, tests=3) == [True, False, False]
    assert changepoints.holm([0.002, 0.004], 0.01, tests=2) == [True, True]
    # once one fails, the larger ones fail too
    assert changepoints.holm([0.02, 0.001, 0.0051], 0.01) == [False, True, False]
    assert changepoints.holm([], 0.01, tests=5) == []


def test_a_reference_slower_with_every_other_variant_is_the_machine():
    """A variant without a reference of its own (a test's reference) is judged on its
    time, and that against the test's other variants of the same run: when they all moved
    alike, the machine did."""
    history_values = [10.0, 10.2, 9.9, 10.1, 10.0]
    time = changepoints.judge(history_values, 20.0)
    assert time is not None and time.slower
    alone = series.Verdict("t", "naive", time, None, None, None, 5)
    assert alone.regressed
    sibling = series.Verdict("t", "sdpa", changepoints.judge(history_values, 19.5), None,
                             None, None, 5)
    moved = series.with_siblings([alone, sibling])
    assert moved[0].siblings_move == pytest.approx(1.95, rel=0.01)
    assert not moved[0].regressed
    assert "not beyond the test's other variants, so the machine is" in moved[0].describe()
    # the same variant twice as slow while its sibling kept its time: a regression
    kept = series.with_siblings([alone, series.Verdict(
        "t", "sdpa", changepoints.judge(history_values, 10.0), None, None, None, 5)])
    assert kept[0].regressed and "beyond them" in kept[0].describe()


def test_a_step_under_the_minimum_beside_a_real_one_does_not_hide_it():
    # a steady ratio, a 2% dip at run 6 and a 46% step at run 7: the dip, no change by
    # definition, leaves the step tested against a one-run segment until it is dropped
    values = [0.3257, 0.3266, 0.3264, 0.3256, 0.3264, 0.3205, 0.476]
    [cp] = changepoints.detect(values)
    assert cp.index == 6 and cp.step == pytest.approx(0.46, abs=0.02) and cp.p < 0.01


# ---- the within-run ratio, round by round ----------------------------------------------------

def test_the_within_run_ratio_pairs_rounds_so_a_speed_step_mid_run_cancels():
    # the machine 50% slower from round 6 on; the slow variant's rounds still pay for the
    # step one round later than the fast one's in their medians
    fast = [0.8, 0.7, 0.78, 0.74, 0.76, 1.18, 1.16, 1.12]
    slow = [2.41, 2.35, 2.19, 2.36, 2.40, 2.24, 3.67, 3.50]
    value, se = history.paired_ratio(fast, slow)
    assert value == pytest.approx(0.32, abs=0.005)
    assert 0.0 < se < 0.1
    # disturbed rounds are left out while at least three clean pairs remain
    flags = [False] * 5 + [True] * 3
    assert history.paired_ratio(fast, slow, flags)[0] == pytest.approx(0.3167, abs=0.001)
    # rounds of unequal count, or too few, give no paired ratio (the medians' ratio stands)
    assert history.paired_ratio(fast, slow[:-1]) is None
    assert history.paired_ratio(fast[:2], slow[:2]) is None


def test_a_series_reads_the_paired_ratio_where_its_runs_kept_rounds():
    run = RunInfo(1, "2026-11-29T10:01:00+00:00", None, None, "m1", "h", "t")
    fast = Point(run, "t.py::test_op", "fast", "slow", 1.0, (), (1.0, 1.0, 2.0), ())
    slow = Point(run, "t.py::test_op", "slow", "fast", 2.5, (), (3.0, 3.0, 6.0), ())
    ratio = [s for s in series.build([slow, fast]) if s.kind == "ratio" and s.variant == "fast"]
    assert ratio[0].values == pytest.approx((1 / 3,))  # not 1.0 / 2.5
    old = Point(run, "t.py::test_op", "fast", "slow", 1.0, ())
    old_ref = Point(run, "t.py::test_op", "slow", "fast", 2.5, ())
    assert series.within_run_ratio(old, old_ref) == (0.4, None)


def test_a_one_run_blip_before_the_newest_run_does_not_hide_its_step():
    # a 6% blip at run 6 and a 20% step at run 7: the pair of one-run segments has no
    # degree of freedom, so the blip, the smaller step, is dropped first
    values = [0.321, 0.325, 0.324, 0.319, 0.319, 0.342, 0.386]
    [cp] = changepoints.detect(values)
    assert cp.index == 6 and cp.step > 0.15 and cp.p < 0.01


def pair_on(speed: list[float], seed: int) -> list[Point]:
    """Runs of a pair whose ``fast`` takes 0.32 of ``slow``'s 3.6 ms, on a machine whose
    speed in each run is ``speed`` (1.0: as usual, 0.65: 35% faster)."""
    return points([(3.6 * s, 3.6 * s * r) for s, r in
                   zip(speed, noisy(len(speed), level=0.32, spread=0.01, seed=seed))])


def fast_today(history: list[Point], speed: float, factor: float) -> series.Verdict:
    """Today's ``fast``, ``factor`` times slower than it was, on the machine at ``speed``."""
    return series.verdict(history, "t.py::test_op", "fast", speed * 3.6 * 0.32 * factor,
                          "slow", speed * 3.6)


def test_on_a_machine_whose_speed_jumps_the_ratio_decides():
    # a cloud host whose runs sit in two speed states 35% apart: the pair's times jump
    # together, their ratio holds at 0.32 (the detection benchmark's history)
    history = pair_on([1.0, 1.0, 0.65, 1.0, 0.97, 1.0], seed=9)
    # today the machine is in its fast state and "fast" 1.5x slower: its time barely moved,
    # the reference's fell 35%, within what this machine's runs scatter
    fast = fast_today(history, 0.65, 1.5)
    assert fast.ratio is not None and fast.ratio.ratio == pytest.approx(1.5, rel=0.03)
    assert fast.regressed
    store = series.analyse(series.build(history + [
        Point(RunInfo(7, "2026-11-29T10:07:00+00:00", "c7", "main", "m1", "h", "t"),
              "t.py::test_op", variant, ref, ms, (ms,))
        for variant, ref, ms in (("slow", "fast", 0.65 * 3.6),
                                 ("fast", "slow", 0.65 * 3.6 * 0.32 * 1.5))]))
    assert [a.series.label for a in series.slowdowns(store)] == ["fast / slow"]


def test_a_reference_that_got_faster_on_a_steady_machine_is_not_the_candidates_regression():
    history = points([(10 * a, 3.2 * b) for a, b in zip(noisy(6, seed=10), noisy(6, seed=11))])
    # the reference 30% faster (a new library release), the candidate unchanged
    fast = series.verdict(history, "t.py::test_op", "fast", 3.2, "slow", 7.0)
    assert fast.ratio is not None and fast.ratio.slower and not fast.regressed
    assert "so slow changed" in fast.describe()


def test_a_one_variant_test_is_judged_against_the_variants_judged_before_it():
    """The bandwidth suite's gemv, alone in its test, read 1.38x its history in a run where
    the machine was slower for the tests around it too (gemm 1.33x): no regression. With
    nothing judged before it, or with neighbours that kept their times, it is one."""
    history_values = [5.42, 5.14, 4.77, 4.96]
    gemv = series.Verdict("bw::test_gemv", "gemv", changepoints.judge(history_values, 6.997),
                          None, None, None, 4)
    assert gemv.regressed
    slower_machine = [series.Verdict(f"bw::test_{n}", n, changepoints.judge(
        [10.0, 10.2, 9.9, 10.1], 13.3), None, None, None, 4) for n in ("gemm", "add")]
    [judged] = series.with_neighbours([gemv], slower_machine)
    assert judged.siblings_move == pytest.approx(1.33, rel=0.02) and not judged.regressed
    assert "the 2 variant(s) judged before it in this run" in judged.describe()
    steady = [series.Verdict("bw::test_gemm", "gemm", changepoints.judge(
        [10.0, 10.2, 9.9, 10.1], 10.0), None, None, None, 4)]
    assert series.with_neighbours([gemv], steady)[0].regressed
    assert series.with_neighbours([gemv])[0].regressed  # the first test of a run
    # the test's own other variants come first: neighbours only stand in without them
    both = series.with_neighbours([gemv, series.Verdict(
        "bw::test_gemv", "gemv-2", changepoints.judge(history_values, 5.0), None, None, None,
        4)], slower_machine)
    assert both[0].siblings == "the test's other variants" and both[0].regressed


def test_a_change_of_the_machines_speed_leaves_the_ratio_to_judge():
    # both variants' times step to a 40% faster state at run 5: a change point in each time
    # series leaves two runs since, too few to judge a time; their ratio ran on unbroken
    history = pair_on([1.0, 1.0, 1.0, 1.0, 0.6, 0.6], seed=12)
    fast = fast_today(history, 0.6, 1.2)
    assert fast.time is None and fast.ratio is not None and fast.judged
    assert fast.regressed and "too few to judge" in fast.describe()
    steady = fast_today(history, 0.6, 1.0)
    assert steady.judged and not steady.regressed and "unchanged" in steady.describe()
