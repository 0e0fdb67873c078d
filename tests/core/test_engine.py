"""Unit tests for pytest_hwopt.core.engine, driven by a fake timer and a virtual clock.

Nothing here sleeps or reads a real clock: each variant's calls "take" scripted
durations (exact binary fractions of a second, so sums are exact), the fake
timer advances a virtual clock by them, and the engine's decisions follow.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import pytest

from pytest_hwopt.core.contention import CpuSnapshot
from pytest_hwopt.core.engine import Engine, EngineConfig, RunResult, Variant

MS1 = 2.0**-10  # a "1 ms" call: 0.9765625 ms, exact in binary
MS1_IN_MS = 0.9765625


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """Every call of every variant, in order; each variant returns its own call count."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.counts: dict[str, int] = {}

    def fn(self, name: str) -> Callable[[], int]:
        def call() -> int:
            self.log.append(name)
            self.counts[name] = self.counts.get(name, 0) + 1
            return self.counts[name]
        return call


class FakeTimer:
    """Calls ``fn`` calls_per_sample times per sample and reports scripted durations.

    ``duration(name, n)`` is how long call ``n`` (1-based) of variant ``name`` takes.
    """

    name = "fake timer"

    def __init__(self, calls: Calls, clock: VirtualClock,
                 duration: Callable[[str, int], float]) -> None:
        self.calls, self.clock, self.duration = calls, clock, duration
        self.blocks: list[tuple[str, int, int]] = []  # (variant, calls_per_sample, samples)

    def time_samples(self, fn, calls_per_sample, samples):
        out = []
        names = set()
        for _ in range(samples):
            took = 0.0
            for _ in range(calls_per_sample):
                fn()
                name = self.calls.log[-1]
                names.add(name)
                took += self.duration(name, self.calls.counts[name])
            self.clock.now += took
            out.append(took)
        assert len(names) == 1
        self.blocks.append((names.pop(), calls_per_sample, samples))
        return out


def snapshot() -> CpuSnapshot:
    return CpuSnapshot(0.0, None, None, None, 0.0)


class Rig:
    """An engine wired to fakes, with handles on them."""

    def __init__(self, names=("naive", "fused"), duration=lambda name, n: MS1,
                 faults=lambda: 0, memory=None, cpu_snapshot=snapshot, **config) -> None:
        self.calls = Calls()
        self.clock = VirtualClock()
        self.timer = FakeTimer(self.calls, self.clock, duration)
        config.setdefault("warmup_ms", 0.0)
        self.config = EngineConfig(**config)
        self.engine = Engine(self.config, self.timer, self.clock, memory, faults, cpu_snapshot)
        self.variants = [Variant(n, self.calls.fn(n)) for n in names]
        self.warmup_blocks = 0

    def run(self, decided=None, variants=None) -> RunResult:
        result = self.engine.run(variants or self.variants, decided)
        self.warmup_blocks = sum(m.warmup_calls for m in result.measurements.values())
        return result

    @property
    def round_blocks(self) -> list[tuple[str, int, int]]:
        return self.timer.blocks[self.warmup_blocks:]


# --- warm-up and calibration ---------------------------------------------------------------


def test_warm_up_does_at_least_three_calls():
    rig = Rig(warmup_ms=0.0, min_rounds=3)
    result = rig.run()
    for m in result.measurements.values():
        assert m.warmup_calls == 3
    assert rig.timer.blocks[:6] == [("naive", 1, 1)] * 3 + [("fused", 1, 1)] * 3


def test_warm_up_lasts_warmup_ms():
    """51 calls of 0.9765625 ms make 49.8 ms; the 52nd reaches 50 ms."""
    rig = Rig(names=("only",), warmup_ms=50.0, min_rounds=3)
    assert rig.run().measurements["only"].warmup_calls == 52


def test_warm_up_is_capped_at_ten_thousand_calls():
    rig = Rig(names=("tiny",), duration=lambda name, n: 1e-9, warmup_ms=50.0, min_rounds=3,
              block_ms=0.001)
    assert rig.run().measurements["tiny"].warmup_calls == 10_000


def test_first_call_is_timed_but_not_used_for_calibration():
    """A 0.5 s first call (compilation) is the cold start; blocks are sized from the rest."""
    rig = Rig(names=("jit",), duration=lambda name, n: 0.5 if n == 1 else MS1, min_rounds=3)
    m = rig.run().measurements["jit"]
    assert m.first_call_ms == 500.0
    assert m.calls_per_sample == 1
    assert rig.round_blocks == [("jit", 1, 10)] * 3  # round(10 ms / 0.977 ms) samples a block
    assert max(m.samples_ms) == MS1_IN_MS


def test_calibration_batches_tiny_calls():
    """1 us calls: 100 calls per 0.1 ms sample, 100 samples per 10 ms block."""
    rig = Rig(names=("tiny",), duration=lambda name, n: 1e-6, min_sample_ms=0.1, min_rounds=3)
    m = rig.run().measurements["tiny"]
    assert m.calls_per_sample == 100
    assert rig.round_blocks == [("tiny", 100, 100)] * 3
    assert len(m.samples_ms) == 300
    assert m.samples_ms == pytest.approx([0.001] * 300, rel=1e-9)
    assert m.calls == 300 * 100


def test_samples_are_per_call_milliseconds():
    """2**-14 s calls: 2 calls per 0.1 ms sample; a sample's time is divided by 2."""
    rig = Rig(names=("fast",), duration=lambda name, n: 2.0**-14, min_rounds=4)
    m = rig.run().measurements["fast"]
    assert m.calls_per_sample == 2
    assert set(m.samples_ms) == {0.06103515625}
    assert m.rounds_ms == [0.06103515625] * 4


def test_rounds_are_median_of_their_block():
    """Per-call times cycle 1, 2, 3 "ms" and every 7th call spikes 8x.

    Each round's value is the median of its block, so the spikes never reach it.
    """
    def duration(name, n):
        return MS1 * (1 + n % 3) * (8 if n % 7 == 0 else 1)

    rig = Rig(names=("v",), duration=duration, min_rounds=3, block_ms=9.0, min_sample_ms=0.0)
    m = rig.run().measurements["v"]
    per_block = rig.round_blocks[0][2]
    assert per_block == 5
    for i, round_ms in enumerate(m.rounds_ms):
        assert round_ms == statistics.median(m.samples_ms[i * per_block:(i + 1) * per_block])
    assert max(m.rounds_ms) < max(m.samples_ms)


# --- rounds ---------------------------------------------------------------------------------


def test_rounds_interleave_one_block_per_variant():
    rig = Rig(names=("a", "b", "c"), min_rounds=8)
    result = rig.run()
    blocks = rig.round_blocks
    assert len(blocks) == 3 * 8
    rounds = [blocks[i:i + 3] for i in range(0, len(blocks), 3)]
    orders = set()
    for r in rounds:
        assert sorted(name for name, _, _ in r) == ["a", "b", "c"]
        orders.add(tuple(name for name, _, _ in r))
    assert len(orders) > 1  # the order is shuffled from round to round
    assert result.rounds == 8
    assert all(len(m.rounds_ms) == 8 for m in result.measurements.values())
    assert all(len(m.samples_ms) == 8 * 10 for m in result.measurements.values())


def test_round_order_is_seeded():
    def order(seed):
        rig = Rig(names=("a", "b", "c"), min_rounds=10, seed=seed)
        rig.run()
        return [name for name, _, _ in rig.round_blocks]

    assert order(3) == order(3)
    assert order(3) != order(4)


def test_min_rounds_without_decision_callback():
    rig = Rig(min_rounds=5, max_time_s=100.0)
    result = rig.run()
    assert (result.rounds, result.stopped) == (5, "min rounds")


def test_decided_stops_at_min_rounds():
    seen = []

    def decided(measurements):
        seen.append({name: len(m.rounds_ms) for name, m in measurements.items()})
        return True

    rig = Rig(min_rounds=6, max_time_s=100.0)
    result = rig.run(decided)
    assert (result.rounds, result.stopped) == (6, "decided")
    assert seen == [{"naive": 6, "fused": 6}]


def test_undecided_runs_until_the_time_limit():
    """A round is 2 variants x 10 calls x 0.977 ms = 19.53 ms; 0.1 s takes 6 rounds.

    Rounds grow by half (at least 2) between decisions: 3, 5, then 6 hits the limit.
    """
    seen = []

    def decided(measurements):
        seen.append(len(measurements["naive"].rounds_ms))
        return False

    rig = Rig(min_rounds=3, max_time_s=0.1)
    result = rig.run(decided)
    assert result.stopped == "time limit"
    assert result.rounds == 6
    assert seen == [3, 5, 6]
    assert result.elapsed_s == 6 * 20 * MS1


def test_undecided_round_growth_is_half_again():
    seen = []
    rig = Rig(min_rounds=3, max_time_s=1.0)
    result = rig.run(lambda ms: seen.append(len(ms["naive"].rounds_ms)) or False)
    assert seen == [3, 5, 7, 10, 15, 22, 33, 49, 52]
    assert (result.rounds, result.stopped) == (52, "time limit")


def test_decision_that_comes_later():
    rig = Rig(min_rounds=4, max_time_s=100.0)
    result = rig.run(lambda ms: len(ms["naive"].rounds_ms) >= 9)
    assert (result.rounds, result.stopped) == (9, "decided")  # 4 -> 6 -> 9


def test_round_limit():
    rig = Rig(min_rounds=3, max_rounds=4, max_time_s=100.0)
    result = rig.run(lambda ms: False)
    assert (result.rounds, result.stopped) == (4, "round limit")


def test_time_limit_can_cut_min_rounds_short_but_not_below_three():
    """Documents current behaviour: max_time_s takes precedence over min_rounds."""
    rig = Rig(min_rounds=8, max_time_s=0.001)
    result = rig.run(lambda ms: False)
    assert (result.rounds, result.stopped) == (3, "time limit")


def test_settle_call_only_when_calls_are_short():
    short = Rig(names=("short",), min_rounds=3)  # 0.98 ms calls, 10 ms blocks: settle
    short.run()
    # 3 warm-up + 3 rounds x (1 settle + 10 timed) + 1 output_after
    assert short.calls.counts["short"] == 3 + 3 * 11 + 1
    long = Rig(names=("long",), duration=lambda name, n: 2.0**-7, min_rounds=3)  # 7.8 ms
    long.run()
    assert long.round_blocks == [("long", 1, 1)] * 3
    assert long.calls.counts["long"] == 3 + 3 * 1 + 1


# --- outputs, probes and bookkeeping -------------------------------------------------------


def test_output_from_first_call_and_output_after_timing():
    rig = Rig(min_rounds=3)
    result = rig.run()
    for name, m in result.measurements.items():
        assert m.output == 1  # the first call's return value
        assert m.output_after == rig.calls.counts[name]  # the very last call
        assert m.output_after > m.warmup_calls + m.calls


class FakeMemory:
    kind = "fake memory"

    def __init__(self) -> None:
        self.measured: list[int] = []

    def measure(self, fn):
        self.measured.append(fn())
        return 12.5


def test_memory_probe_runs_after_timing():
    memory = FakeMemory()
    rig = Rig(min_rounds=3, memory=memory)
    result = rig.run()
    for name, m in result.measurements.items():
        assert (m.peak_memory_mb, m.memory_kind) == (12.5, "fake memory")
        assert m.output_after == rig.calls.counts[name] - 1
    assert memory.measured == [rig.calls.counts["naive"], rig.calls.counts["fused"]]


def test_without_memory_probe_peak_is_none():
    result = Rig(min_rounds=3).run()
    assert all(m.peak_memory_mb is None for m in result.measurements.values())


def test_faults_per_call():
    """The fault counter rises by one per read; it is read around each block of 11 calls."""
    counter = iter(range(10**6))
    rig = Rig(names=("v",), min_rounds=4, faults=lambda: next(counter))
    m = rig.run().measurements["v"]
    assert m.minor_faults_per_call == pytest.approx(4 / (4 * 11))


def test_measurement_fields():
    rig = Rig(min_rounds=3)
    variants = [Variant("naive", rig.calls.fn("naive"), items=8, prepare_s=0.25,
                        extra={"backend": "eager"}),
                Variant("fused", rig.calls.fn("fused"))]
    result = rig.run(variants=variants)
    naive = result.measurements["naive"]
    assert (naive.name, naive.items, naive.prepare_s, naive.extra) == \
        ("naive", 8, 0.25, {"backend": "eager"})
    assert naive.timer == "fake timer"
    assert naive.first_call_ms == MS1_IN_MS
    assert naive.minor_faults_per_call == 0.0
    assert list(result.measurements) == ["naive", "fused"]
    assert result.measurements["fused"].items == 1


def test_contention_from_cpu_snapshots():
    """Before/after snapshots: 3 busy core-seconds, 1 of them ours, over 2 s -> 1 other core."""
    snaps = iter([CpuSnapshot(0.0, 10.0, 0.0, 100.0, 1.0), CpuSnapshot(2.0, 13.0, 0.0, 110.0, 2.0)])
    result = Rig(min_rounds=3, cpu_snapshot=lambda: next(snaps)).run()
    assert result.contention.other_busy_cores == 1.0
    assert result.contention.steal_fraction == 0.0
    assert result.contention.contended


def test_contention_unknown_without_proc_stat():
    result = Rig(min_rounds=3).run()
    assert result.contention.other_busy_cores is None
    assert not result.contention.contended


# --- errors ---------------------------------------------------------------------------------


def test_no_variants():
    with pytest.raises(ValueError, match="no variants"):
        Rig().engine.run([])


def test_duplicate_names():
    rig = Rig()
    with pytest.raises(ValueError, match="unique"):
        rig.engine.run([Variant("a", rig.calls.fn("a")), Variant("a", rig.calls.fn("a"))])
    assert rig.calls.log == []  # rejected before anything runs


@pytest.mark.parametrize("kwargs", [{"min_rounds": 2}, {"warmup_ms": -1.0},
                                    {"block_ms": float("nan")}, {"max_time_s": float("inf")},
                                    {"min_sample_ms": "0.1"}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        EngineConfig(**kwargs)


def test_single_warmup_call_is_rejected_or_works():
    try:
        config = dict(min_warmup_calls=1, warmup_ms=0.0, min_rounds=3)
        rig = Rig(names=("v",), **config)
    except ValueError as exc:  # rejecting the config up front would be fine too
        assert "min_warmup_calls" in str(exc)
        return
    assert rig.run().rounds == 3


# --- setup, awaitables, lazy outputs, one call each (core.calls) ----------------------------


def test_setup_runs_before_every_call_and_its_value_is_passed():
    """A setup's value reaches the very call after it; with a setup, each sample is one
    call timed on its own, so the setup stays outside every timed region."""
    events: list[object] = []
    rig = Rig(names=(), min_rounds=3)
    record = rig.calls.fn("sort")

    def setup() -> int:
        events.append("setup")
        return len(events)

    def sort(token: int) -> int:
        assert events[-1] == "setup" and token == len(events)  # fresh, just made
        events.append("call")
        return record()

    result = rig.run(variants=[Variant("sort", sort, setup=setup)])
    m = result.measurements["sort"]
    assert events.count("setup") == events.count("call") == rig.calls.counts["sort"]
    assert m.calls_per_sample == 1
    assert set(rig.timer.blocks) == {("sort", 1, 1)}  # one sample per timed block
    assert m.extra["setup"] is True
    assert "first_call_note" not in m.extra


def test_first_call_far_slower_than_the_steady_state_is_noted():
    rig = Rig(names=("sort",), duration=lambda name, n: 2.0**-5 if n == 1 else MS1,
              min_rounds=3)
    m = rig.run().measurements["sort"]
    note = m.extra["first_call_note"]
    assert note.startswith("first call 32x the steady state (31.2 ms vs a median of 0.977 ms)")
    assert "setup=" in note


@pytest.mark.parametrize(("first", "steady"), [
    (MS1 * 9, MS1),  # 9x: below the factor
    (2.0**-10, 2.0**-14),  # 16x, but 0.92 ms longer: below the 1 ms that counts
])
def test_first_call_a_little_slower_is_not_noted(first, steady):
    rig = Rig(names=("v",), duration=lambda name, n: first if n == 1 else steady,
              min_rounds=3)
    assert "first_call_note" not in rig.run().measurements["v"].extra


def test_first_call_of_a_prepared_variant_is_its_cold_start_not_a_note():
    rig = Rig(names=(), duration=lambda name, n: 0.5 if n == 1 else MS1, min_rounds=3)
    variant = Variant("onnxruntime", rig.calls.fn("onnxruntime"), prepare_s=2.0)
    assert "first_call_note" not in rig.run(variants=[variant]).measurements[
        "onnxruntime"].extra


def test_awaitable_variant_is_awaited_in_every_timed_call():
    import asyncio

    rig = Rig(names=(), min_rounds=3)
    record = rig.calls.fn("async")
    awaited: list[int] = []

    async def work() -> int:
        await asyncio.sleep(0)
        awaited.append(1)
        return record()

    result = rig.run(variants=[Variant("async", lambda: work())])
    m = result.measurements["async"]
    assert len(awaited) == rig.calls.counts["async"]  # every call's coroutine ran
    assert m.output == 1 and m.extra["awaited"] is True
    assert rig.engine.call_of("async")() == rig.calls.counts["async"]
    rig.engine.close()


def test_lazy_output_is_refused_before_any_timing():
    from pytest_hwopt.core.calls import DeferredOutput

    rig = Rig(names=(), min_rounds=3)
    with pytest.raises(DeferredOutput, match="'gen' returned a generator"):
        rig.run(variants=[Variant("gen", lambda: (x for x in range(3)))])
    assert rig.timer.blocks == []
    rig.engine.close()


def test_run_once_calls_each_variant_once():
    memory = FakeMemory()
    rig = Rig(memory=memory)
    made: list[int] = []
    variants = rig.variants + [Variant("fresh", lambda data: data * 2,
                                       setup=lambda: made.append(1) or 21)]
    result = rig.engine.run_once(variants)
    assert rig.calls.counts == {"naive": 1, "fused": 1} and made == [1]
    assert result.stopped == "single call" and result.rounds == 1
    fresh = result.measurements["fresh"]
    assert fresh.output == fresh.output_after == 42
    naive = result.measurements["naive"]
    assert naive.samples_ms == naive.rounds_ms == [MS1_IN_MS] == [naive.first_call_ms]
    assert naive.peak_memory_mb == 12.5  # the probe watched that one call
    assert memory.measured == [None, None, None]  # the call appends, returns None
