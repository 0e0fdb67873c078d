"""A disturbed sample never decides a verdict: timers' flags, the engine, the evaluators.

Everything here is driven by fakes (a probe with scripted counters, a timer that flags
and inflates scripted samples, a virtual clock), so the outcomes are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pytest_hwopt.core.contention import CpuSnapshot, Preemption, SchedCounters, Undisturbed
from pytest_hwopt.core.engine import Engine, EngineConfig, Variant
from pytest_hwopt.core.measurement import (
    MAX_DISTURBED_FRACTION,
    Measurement,
    clean_round_pairs,
)
from pytest_hwopt.core.specs import parse_marker
from pytest_hwopt.core.timing import (
    CudaEventTimer,
    HostTimer,
    SyncedHostTimer,
    Timed,
    time_flagged,
)
from pytest_hwopt.core.verdicts import (
    INCONCLUSIVE,
    PASSED,
    REPORTED,
    evaluate,
    evaluate_all,
    reported_speedups,
    undecided,
)

CPU = ["cpu"]
MS = 2.0**-10  # a "1 ms" call, exact in binary


def spec(kind, **kwargs):
    return parse_marker(kind, (), kwargs)


# ---- the probe's rule ----------------------------------------------------------------------


def test_any_involuntary_switch_disturbs_a_short_sample():
    probe = Preemption()
    assert probe.disturbed((5, 0), (6, 0), 0.001)
    assert not probe.disturbed((5, 0), (5, 0), 0.001)


def test_run_queue_wait_counts_above_the_floor_and_the_fraction():
    probe = Preemption(wait_floor_ns=20_000, wait_fraction=0.01)
    assert not probe.disturbed((0, 0), (0, 19_000), 0.0001)  # a wake-up's latency
    assert probe.disturbed((0, 0), (0, 25_000), 0.0001)  # 25 us of a 0.1 ms sample
    assert not probe.disturbed((0, 0), (0, 90_000), 0.01)  # 0.9% of a 10 ms sample
    assert probe.disturbed((0, 0), (0, 2_000_000), 0.01)  # a lost time slice


def test_undisturbed_probe_never_flags():
    probe = Undisturbed()
    with probe.reading() as read:
        assert not probe.disturbed(read(), (10**6, 10**12), 0.001)


# ---- timers --------------------------------------------------------------------------------


class ScriptedProbe:
    """Counters that jump by one involuntary switch at the readings listed in ``bumps``
    (reading 0 is the one before the first sample)."""

    def __init__(self, bumps: set[int]) -> None:
        self.bumps = bumps
        self.readings = 0
        self.blocks = 0
        self.switches = 0

    @contextmanager
    def reading(self) -> Iterator[Callable[[], SchedCounters]]:
        self.blocks += 1

        def read() -> SchedCounters:
            if self.readings in self.bumps:
                self.switches += 1
            self.readings += 1
            return self.switches, 0

        yield read

    def disturbed(self, before: SchedCounters, after: SchedCounters, seconds: float) -> bool:
        return after[0] > before[0]


def test_host_timer_flags_the_samples_whose_counters_moved():
    probe = ScriptedProbe(bumps={2, 4})  # during samples 1 and 3 (0-based)
    timed = HostTimer(probe).time_flagged(lambda: None, calls_per_sample=2, samples=5)
    assert timed.disturbed == [False, True, False, True, False]
    assert len(timed.seconds) == 5
    assert (probe.readings, probe.blocks) == (6, 1)  # one reading per sample, one before


def test_host_timer_time_samples_does_not_read_the_probe():
    """Warm-up times single calls: without the probe, at no extra cost."""
    probe = ScriptedProbe(bumps=set())
    assert len(HostTimer(probe).time_samples(lambda: None, 1, 3)) == 3
    assert probe.readings == 0


def test_synced_host_timer_flags_too():
    probe = ScriptedProbe(bumps={1})
    calls = []
    timed = SyncedHostTimer(lambda: calls.append("sync"), probe).time_flagged(
        lambda: calls.append("call"), 1, 3)
    assert timed.disturbed == [True, False, False]
    assert calls == ["sync", "call", "sync", "call", "sync", "call", "sync"]


class FakeCuda:
    def __init__(self) -> None:
        self.device_ms = 0.0

    def Event(self, enable_timing: bool = False) -> FakeEvent:
        return FakeEvent(self)

    def synchronize(self) -> None:
        pass


class FakeEvent:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda, self.at = cuda, 0.0

    def record(self) -> None:
        self.at = self.cuda.device_ms

    def elapsed_time(self, end: FakeEvent) -> float:
        return end.at - self.at


def test_cuda_event_timer_flags_from_the_host_side():
    cuda = FakeCuda()

    def kernel() -> None:
        cuda.device_ms += 1.0

    timed = CudaEventTimer(cuda, probe=ScriptedProbe(bumps={3})).time_flagged(kernel, 1, 4)
    assert timed.seconds == [0.001] * 4
    assert timed.disturbed == [False, False, True, False]


class PlainTimer:
    """A timer without flags, as older code and other tests write them."""

    name = "plain"

    def time_samples(self, fn, calls_per_sample, samples):
        return [0.5] * samples


def test_a_timer_without_flags_counts_every_sample_undisturbed():
    assert time_flagged(PlainTimer(), lambda: None, 1, 3) == Timed([0.5] * 3, [False] * 3)


# ---- the engine ----------------------------------------------------------------------------


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class BusyTimer:
    """Every call takes ``cost[name]`` seconds; samples that ``hit(name, k)`` (k counts the
    variant's timed samples from 0) are disturbed and last ``inflate`` times as long, as a
    busy neighbour makes them. Warm-up calls (``time_samples``) are never disturbed."""

    name = "busy fake"

    def __init__(self, clock: VirtualClock, cost: dict[str, float],
                 hit: Callable[[str, int], bool], inflate: float = 2.0) -> None:
        self.clock, self.cost, self.hit, self.inflate = clock, cost, hit, inflate
        self.taken: dict[str, int] = {}

        self.last = ""  # the variant whose function ran last (each sets it)

    def time_samples(self, fn, calls_per_sample, samples):
        fn()
        name = self.last
        took = self.cost[name] * calls_per_sample
        self.clock.now += took * samples
        return [took] * samples

    def time_flagged(self, fn, calls_per_sample, samples):
        fn()
        name = self.last
        seconds, flags = [], []
        for _ in range(samples):
            k = self.taken.get(name, 0)
            self.taken[name] = k + 1
            bad = self.hit(name, k)
            took = self.cost[name] * calls_per_sample * (self.inflate if bad else 1.0)
            self.clock.now += took
            seconds.append(took)
            flags.append(bad)
        return Timed(seconds, flags)


def engine_run(cost, hit, decided=None, inflate=2.0, **config):
    clock = VirtualClock()
    timer = BusyTimer(clock, cost, hit, inflate)
    config.setdefault("warmup_ms", 0.0)
    config.setdefault("min_sample_ms", 0.0)
    engine = Engine(EngineConfig(**config), timer, clock,
                    cpu_snapshot=lambda: CpuSnapshot(0.0, None, None, None, 0.0))

    def variant(name):
        def fn():
            timer.last = name
            return name
        return Variant(name, fn)

    variants = [variant(name) for name in cost]
    return engine.run(variants, decided)


def test_engine_keeps_every_sample_and_its_flag_and_rounds_use_the_clean_ones():
    """Blocks of 10 samples of 1 ms; every third sample is disturbed and lasts 2 ms."""
    result = engine_run({"v": MS}, lambda name, k: k % 3 == 0, min_rounds=3)
    m = result.measurements["v"]
    assert len(m.disturbed) == len(m.samples_ms) == 30
    assert m.disturbed == [k % 3 == 0 for k in range(30)]
    assert [s for s, bad in zip(m.samples_ms, m.disturbed) if bad] == [2 * MS * 1000] * 10
    assert m.rounds_ms == [MS * 1000] * 3  # the disturbed samples never reach a round
    assert m.rounds_disturbed == [False] * 3
    assert m.median_ms == m.p99_ms == m.min_ms == MS * 1000
    assert m.disturbed_fraction == pytest.approx(10 / 30)
    d = m.to_dict()
    assert d["disturbed"] == m.disturbed and d["disturbed_fraction"] == pytest.approx(1 / 3)
    assert d["rounds_disturbed"] == [False] * 3
    assert d["p99_ms"] == MS * 1000


def test_a_block_without_clean_samples_gives_a_disturbed_round():
    """One sample a block (8 ms calls): a disturbed sample makes a disturbed round."""
    result = engine_run({"v": 8 * MS}, lambda name, k: k in (1, 2), min_rounds=5)
    m = result.measurements["v"]
    assert m.rounds_disturbed == [False, True, True, False, False]
    assert m.clean_rounds_ms == [8 * MS * 1000] * 3


def test_engine_adds_rounds_while_a_variant_lacks_clean_rounds():
    """No decision callback: rounds continue past min_rounds until 3 rounds are clean."""
    result = engine_run({"v": 8 * MS}, lambda name, k: k < 6, min_rounds=3, max_time_s=100.0)
    m = result.measurements["v"]
    assert m.rounds_disturbed.count(False) >= 3
    assert result.rounds > 3 and result.stopped == "min rounds"


def test_engine_stops_at_the_time_limit_when_every_sample_is_disturbed():
    seen = []
    result = engine_run({"v": 8 * MS}, lambda name, k: True, min_rounds=3, max_time_s=0.5,
                        decided=lambda ms: seen.append(1) or True)
    assert result.stopped == "time limit"
    assert seen == []  # never asked: no verdict can be read yet
    assert all(result.measurements["v"].disturbed)


def test_contended_long_calls_would_decide_wrongly_but_clean_samples_decide_right():
    """The trap from the measurements: a neighbour hits the 3 ms calls more often than the
    1 ms ones and triples them, so the samples' means read 5x for a true 3.0x; judged on
    the clean samples, 2.5x passes and 3.5x fails."""
    def hit(name, k):
        return k % 2 == 0 if name == "slow" else k % 10 == 0

    def decided(ms):
        return not undecided(evaluate_all([spec("speedup", min=2.5, vs="slow")], ms, CPU))

    result = engine_run({"slow": 3 * MS, "fast": MS}, hit, decided, inflate=3.0,
                        min_rounds=8, max_time_s=100.0)
    slow, fast = result.measurements["slow"], result.measurements["fast"]
    wall = (sum(slow.samples_ms) / len(slow.samples_ms)) / (sum(fast.samples_ms)
                                                            / len(fast.samples_ms))
    assert wall > 4.0  # what a clock without flags would have read (mean ratio)
    (check,) = evaluate_all([spec("speedup", min=2.5, vs="slow")], result.measurements, CPU)
    assert check.status is PASSED and check.measured == pytest.approx(3.0)
    (check,) = evaluate_all([spec("speedup", min=3.5, vs="slow")], result.measurements, CPU)
    assert check.status.value == "failed" and check.reason == ""


def test_a_verdict_that_holds_on_the_safe_side_survives_a_busy_machine():
    """83% of the reference's samples disturbed: too many to read the ratio from clean
    samples alone, but a preemption only adds time, so the rounds in which the reference
    was undisturbed bound the ratio from below: a budget under that bound passes."""
    def decided(ms):
        return not undecided(evaluate_all([spec("speedup", min=2.0, vs="slow")], ms, CPU))

    result = engine_run({"slow": 3 * MS, "fast": MS}, lambda name, k: name == "slow"
                        and k % 6 != 0, decided, min_rounds=3, max_time_s=0.5)
    (check,) = evaluate_all([spec("speedup", min=2.0, vs="slow")], result.measurements, CPU)
    assert check.status is PASSED and check.reason == ""
    assert check.measured == pytest.approx(3.0)
    busy = check.detail["machine_busy"]
    assert busy.startswith("machine busy: ") and "% of samples of slow disturbed" in busy
    assert "a lower bound on the ratio" in check.detail["one_sided"]
    assert "decided on rounds with slow undisturbed" in check.message


def test_a_machine_that_stays_busy_gives_inconclusive_with_the_reason():
    """Both variants disturbed (and slowed 3x) from their third sample on: no bound clears
    the budget on its safe side, so the check is inconclusive, with no figure."""
    def decided(ms):
        return not undecided(evaluate_all([spec("speedup", min=2.0, vs="slow")], ms, CPU))

    result = engine_run({"slow": 3 * MS, "fast": MS}, lambda name, k: k >= 2, decided,
                        inflate=3.0, min_rounds=3, max_time_s=0.5)
    assert result.stopped == "time limit"
    (check,) = evaluate_all([spec("speedup", min=2.0, vs="slow")], result.measurements, CPU)
    assert check.status is INCONCLUSIVE
    assert check.reason.startswith("machine busy: ")
    assert check.reason.endswith(" disturbed (at most 75% allowed)")
    assert check.point_passed is None and not check.passed
    assert check.measured is None and check.low is None
    assert check.to_dict()["reason"] == check.reason
    assert "not judged (inconclusive: machine busy: " in check.message


def test_a_latency_budget_cleared_by_all_samples_passes_on_a_busy_machine():
    """Every sample disturbed: all of them together still bound the latency from above
    (60 samples: a 95% upper bound on p95 needs 59)."""
    samples = [1.0] * 12 + [3.0] * 48
    cand = m("v", samples, disturbed=[True] * 60)
    (check,) = evaluate(spec("latency", p95_ms=5.0), cand, None, CPU)
    assert check.status is PASSED and check.measured == 3.0
    assert "an upper bound on the time" in check.detail["one_sided"]
    (check,) = evaluate(spec("latency", p95_ms=2.0), cand, None, CPU)
    assert check.status is INCONCLUSIVE and check.reason.startswith("machine busy: ")


# ---- the evaluators ------------------------------------------------------------------------


def m(name, samples, rounds=None, disturbed=(), rounds_disturbed=()):
    samples = list(samples)
    return Measurement(name, samples, list(rounds) if rounds is not None else samples,
                       disturbed=list(disturbed), rounds_disturbed=list(rounds_disturbed))


def test_latency_is_read_from_clean_samples():
    samples = [1.0] * 300 + [50.0] * 5  # a 95% upper bound on p99 needs 299 samples
    cand = m("v", samples, disturbed=[False] * 300 + [True] * 5)
    (check,) = evaluate(spec("latency", p99_ms=2.0), cand, None, CPU)
    assert check.status is PASSED and check.measured == 1.0
    assert cand.p99_ms == 1.0 and cand.median_ms == 1.0 and cand.mean_ms == 1.0


def test_throughput_is_read_from_clean_samples():
    cand = m("v", [1.0] * 10 + [4.0] * 5, disturbed=[False] * 10 + [True] * 5)
    (check,) = evaluate(spec("throughput", min=900.0), cand, None, CPU)
    assert check.status is PASSED and check.measured == 1000.0


def test_speedup_pairs_only_rounds_clean_on_both_sides():
    ref = m("naive", [10.0] * 6, [10.0, 10.0, 30.0, 10.0, 10.0, 10.0],
            rounds_disturbed=[False, False, True, False, False, False])
    cand = m("fused", [5.0] * 6, [5.0, 1.0, 5.0, 5.0, 5.0, 5.0],
             rounds_disturbed=[False, True, False, False, False, False])
    assert clean_round_pairs(ref, cand) == ([10.0] * 4, [5.0] * 4)
    (check,) = evaluate(spec("speedup", min=1.5, vs="naive"), cand, ref, CPU)
    assert check.status is PASSED and check.measured == 2.0


def test_too_few_clean_pairs_is_a_busy_machine():
    ref = m("naive", [10.0] * 4, rounds_disturbed=[True, False, True, False])
    cand = m("fused", [5.0] * 4, rounds_disturbed=[False, True, False, False])
    (check,) = evaluate(spec("speedup", min=1.5, vs="naive"), cand, ref, CPU)
    assert check.status is INCONCLUSIVE
    assert check.reason == ("machine busy: 1 round(s) with undisturbed samples of both "
                            "naive and fused (3 needed)")


def test_too_few_clean_samples_is_a_busy_machine():
    # (a budget all samples clear would pass on the safe side: see the test above)
    cand = m("v", [1.0] * 3, disturbed=[True, False, False])
    (check,) = evaluate(spec("latency", p50_ms=0.5), cand, None, CPU)
    assert check.status is INCONCLUSIVE
    assert check.reason == "machine busy: 2 undisturbed sample(s) of v (3 needed)"


def test_the_disturbed_fraction_limit_is_inclusive():
    n = 100
    bad = round(n * MAX_DISTURBED_FRACTION)
    cand = m("v", [1.0] * n, disturbed=[True] * bad + [False] * (n - bad))
    (check,) = evaluate(spec("latency", p50_ms=0.5), cand, None, CPU)
    assert check.status.value == "failed"
    cand.disturbed[bad] = True
    (check,) = evaluate(spec("latency", p50_ms=0.5), cand, None, CPU)
    assert check.status is INCONCLUSIVE and check.reason.startswith("machine busy: 76%")


def test_every_sample_disturbed_stats_fall_back_and_no_verdict():
    cand = m("v", [3.0, 1.0, 2.0], disturbed=[True] * 3)
    assert cand.median_ms == 2.0  # reported from all samples, for the record
    (check,) = evaluate(spec("latency", p50_ms=1.5), cand, None, CPU)
    assert check.status is INCONCLUSIVE and not check.passed
    assert check.reason == "machine busy: 100% of samples of v disturbed (at most 75% allowed)"


def test_unsampled_kinds_ignore_disturbance():
    cand = m("v", [1.0] * 3, disturbed=[True] * 3)
    cand.peak_memory_mb = 10.0
    (check,) = evaluate(spec("memory", max_mb=20.0), cand, None, CPU)
    assert check.status is PASSED and check.reason == ""


def test_straddling_interval_gives_its_reason():
    naive = m("naive", [10.0] * 9)
    fused = m("fused", [5.0] * 9, [4.0, 4.5, 4.8, 5.0, 5.0, 5.2, 5.5, 6.0, 4.2])
    (check,) = evaluate(spec("speedup", min=2.0, vs="naive"), fused, naive, CPU)
    assert check.status is INCONCLUSIVE and check.reason == "interval straddles the budget"
    (check,) = evaluate(spec("speedup", min=1.0, vs="naive"), fused, naive, CPU)
    assert check.status is PASSED and check.reason == ""


def test_reported_speedup_uses_clean_pairs_and_skips_without_any():
    ref = m("pytorch", [10.0] * 4, rounds_disturbed=[False, False, True, False])
    cand = m("ort", [5.0] * 4, [5.0, 5.0, 0.1, 5.0])
    (check,) = reported_speedups({"pytorch": ref, "ort": cand}, ["pytorch"], [])
    assert check.status is REPORTED and check.measured == 2.0
    ref.rounds_disturbed = [True] * 4
    assert reported_speedups({"pytorch": ref, "ort": cand}, ["pytorch"], []) == []


def test_json_round_trip_keeps_the_flags():
    cand = m("v", [1.0, 9.0, 1.0, 1.0], [1.0, 1.0], disturbed=[False, True, False, False],
             rounds_disturbed=[False, True])
    back = Measurement.from_dict(cand.to_dict())
    assert back.disturbed == cand.disturbed
    assert back.rounds_disturbed == cand.rounds_disturbed
    assert back.median_ms == 1.0
    old = {k: v for k, v in cand.to_dict().items()
           if k not in ("disturbed", "disturbed_fraction", "rounds_disturbed")}
    older = Measurement.from_dict(old)  # a file written before the flags existed
    assert older.disturbed == [] and older.disturbed_fraction == 0.0
    assert older.to_dict()["disturbed"] == [False] * 4


def test_a_long_sample_is_allowed_the_switches_an_idle_machine_makes():
    """Every 100 ms sample of a spinning loop saw 1-3 involuntary switches on the idle CI
    machine: one switch per 20 ms is allowed; the time lost is judged by the run-queue wait."""
    probe = Preemption()
    assert probe.disturbed((0, 0), (1, 0), 0.019)  # shorter than the allowance: any switch
    assert not probe.disturbed((0, 0), (3, 0), 0.1)
    assert not probe.disturbed((0, 0), (5, 0), 0.1)
    assert probe.disturbed((0, 0), (6, 0), 0.1)
    assert probe.disturbed((0, 0), (3, 2_000_000), 0.1)  # 2 ms of 100 ms spent waiting
