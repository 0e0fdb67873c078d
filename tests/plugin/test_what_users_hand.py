"""What users hand the plugin, run as a user runs it (pytester sessions): variants that defer
their work (awaitables, lazy iterators), variants that carry state from call to call, runs
that only want the functional part (``--hwopt-disable``), and percentiles read from a few
slow calls.

Timing claims here are one-sided and far from their truth (an awaited 5 ms sleep reads at
least 5 ms; a fresh sort of 50,000 floats is over 5x slower than re-sorting sorted data,
about 40x here), so a busy machine cannot flip them.
"""

from __future__ import annotations

import json

import pytest

# the inconclusive p95 check of section F warns; let it stand as it would for a user
pytestmark = pytest.mark.filterwarnings("default::pytest_hwopt.InconclusiveWarning")


def results_of(pytester, name="out.json"):
    return json.loads((pytester.path / name).read_text())


# ---- A. awaitables are awaited; lazy iterators refused ------------------------------------

ASYNC_VARIANTS = '''
import asyncio
import pytest
from pytest_hwopt import hwopt


async def sleepy():
    await asyncio.sleep(0.005)
    return 1


async def score(n):
    await asyncio.sleep(0.005)
    return n


class Client:
    async def __call__(self):
        return await sleepy()


VARIANTS = {
    "async def passed directly": lambda: sleepy,
    "coroutine from a lambda": lambda: (lambda: score(1000)),
    "asyncio future": lambda: (lambda: asyncio.ensure_future(sleepy())),
    "asyncio task": lambda: (lambda: asyncio.create_task(sleepy())),
    "async callable object": lambda: Client(),
}


@hwopt.latency(p50_ms=1000)
@pytest.mark.parametrize("form", list(VARIANTS))
def test_async(hwopt_bench, form):
    hwopt_bench.measure("async_score", VARIANTS[form]())
'''


def test_awaitables_are_awaited_and_the_awaited_time_measured(pytester, fast_args):
    """Every form of awaitable reads at least the 5 ms it sleeps (a coroutine object alone
    read 0.0025 ms before), with no "never awaited" warning (an error here)."""
    pytester.makepyfile(test_async=ASYNC_VARIANTS)
    result = pytester.runpytest(*fast_args, "--hwopt-json=out.json", "-W", "error::RuntimeWarning",
                                "-W", "error::pytest.PytestUnraisableExceptionWarning")
    result.assert_outcomes(passed=5)
    rows = results_of(pytester)["results"]
    assert len(rows) == 5
    for row in rows:
        assert row["awaited"] is True, row["test"]
        assert row["min_ms"] >= 5.0, row["test"]


def test_awaited_variant_fails_a_budget_below_its_awaited_time(pytester, fast_args):
    pytester.makepyfile(test_async='''
import asyncio
from pytest_hwopt import hwopt


async def score(n):
    await asyncio.sleep(0.005)
    return n


@hwopt.latency(p50_ms=4)
def test_async_score(hwopt_bench):
    hwopt_bench.measure("async_score", lambda: score(1000))
''')
    # strict: a machine too busy to read clean samples (inconclusive) fails the test too;
    # either way the budget is never passed on the 0.0025 ms of making a coroutine
    result = pytester.runpytest(*fast_args, "--hwopt-strict", "--hwopt-json=out.json")
    result.assert_outcomes(failed=1)
    (check,) = results_of(pytester)["checks"]
    assert check["status"] in ("failed", "inconclusive")
    if check["status"] == "failed":
        result.stdout.fnmatch_lines(["*p50 latency of async_score: * ms (95% CI *) > 4.0 ms"])
    else:
        assert check["reason"].startswith("machine busy")
    result.stdout.no_fnmatch_line("*never awaited*")


@pytest.mark.parametrize(("returned", "what"), [
    ("(x * x for x in range(1000))", "a generator"),
    ("squares(1000)", "a generator"),
    ("map(float, range(1000))", "a map object"),
    ("filter(None, range(1000))", "a filter object"),
    ("zip(range(10), range(10))", "a zip object"),
    ("iter(list(range(10)))", "a list_iterator object"),
])
def test_lazy_iterators_are_refused_naming_the_variant_and_the_fix(pytester, fast_args,
                                                                  returned, what):
    pytester.makepyfile(test_lazy=f'''
from pytest_hwopt import hwopt


def squares(n):
    for i in range(n):
        yield i * i


@hwopt.speedup(min=2, vs="eager")
def test_lazy(hwopt_bench):
    hwopt_bench.measure("eager", lambda: [i * i for i in range(1000)])
    hwopt_bench.measure("lazy", lambda: {returned})
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*variant 'lazy' returned {what}: its work runs only when "
                                 "it is consumed*lambda: list(gen())*"])
    result.stdout.no_fnmatch_line("*passed*speedup*")


def test_a_coroutine_or_generator_passed_instead_of_a_function(pytester, fast_args):
    pytester.makepyfile(test_misuse='''
import asyncio
import pytest


async def score():
    await asyncio.sleep(0)


def squares():
    yield 1


def test_coroutine(hwopt_bench):
    with pytest.raises(TypeError, match="a coroutine.*pass a function that makes a new one"):
        hwopt_bench.measure("c", score())


def test_generator_function(hwopt_bench):
    with pytest.raises(TypeError, match="'g'.*generator function.*list"):
        hwopt_bench.measure("g", squares)
''')
    result = pytester.runpytest(*fast_args, "-W", "error")
    result.assert_outcomes(passed=2)


# ---- B. state carried from call to call ---------------------------------------------------

SORTS = '''
import random
from pytest_hwopt import hwopt

RNG = random.Random(0)
UNSORTED = [RNG.random() for _ in range(50_000)]


def test_sort(hwopt_bench):
    carried = list(UNSORTED)
    hwopt_bench.measure("carried", lambda: carried.sort())
    hwopt_bench.measure("fresh", lambda data: data.sort(), setup=lambda: list(UNSORTED))
'''


def test_setup_gives_every_call_fresh_state_and_a_carried_state_is_noted(pytester, fast_args):
    """Sorting in place times already-sorted data from the second call on; with setup=
    every call sorts fresh data. The carried variant's first call is noted."""
    pytester.makepyfile(test_sort=SORTS)
    result = pytester.runpytest(*fast_args, "--hwopt-json=out.json")
    result.assert_outcomes(passed=1)
    rows = {r["variant"]: r for r in results_of(pytester)["results"]}
    carried, fresh = rows["carried"], rows["fresh"]
    assert fresh["median_ms"] > 5 * carried["median_ms"]
    assert fresh["setup"] is True and "first_call_note" not in fresh
    assert fresh["calls_per_sample"] == 1
    assert carried["first_call_note"].startswith("first call ")
    assert "pass setup=" in carried["first_call_note"]
    result.stdout.fnmatch_lines(["*test_sort.py::test_sort: carried: first call *x the steady "
                                 "state*pass setup=*"])


def test_setup_value_reaches_the_call_and_outputs_are_compared(pytester, fast_args):
    pytester.makepyfile(test_setup='''
from pytest_hwopt import hwopt

MADE = []


def fresh():
    MADE.append(1)
    return [3, 1, 2]


@hwopt.accuracy(vs="reference")
def test_it(hwopt_bench):
    hwopt_bench.measure("reference", lambda: [1, 2, 3])
    hwopt_bench.measure("sorted", lambda data: sorted(data), setup=fresh)


def test_setup_ran_before_every_call():
    assert len(MADE) > 5
''')
    pytester.runpytest(*fast_args, "-p", "no:randomly").assert_outcomes(passed=2)


# ---- C. performance tests as plain tests --------------------------------------------------

PLAIN = '''
import time
from pytest_hwopt import hwopt

CALLS = {}


def counted(name, seconds, value):
    def call():
        CALLS[name] = CALLS.get(name, 0) + 1
        time.sleep(seconds)
        return value
    return call


@hwopt.speedup(min=2.0, vs="slow")
@hwopt.latency(p95_ms=1)
@hwopt.accuracy(vs="slow")
def test_speed(hwopt_bench):
    hwopt_bench.measure("slow", counted("slow", 0.2, [1.0, 2.0]))
    hwopt_bench.measure("fast", counted("fast", 0.1, [1.0, 2.0]))


@hwopt.accuracy(vs="slow")
def test_wrong_outputs_still_fail(hwopt_bench):
    hwopt_bench.measure("slow", counted("slow2", 0.0, [1.0, 2.0]))
    hwopt_bench.measure("fast", counted("fast2", 0.0, [1.0, 2.5]))


def test_zz_each_variant_was_called_once():
    assert CALLS == {"slow": 1, "fast": 1, "slow2": 1, "fast2": 1}
'''


@pytest.mark.parametrize("how", ["option", "ini"])
def test_disable_calls_each_variant_once_and_skips_timing_budgets(pytester, fast_args, how):
    """Budgets a 0.2 s / 0.1 s pair could never pass in a 1 ms latency budget are skipped,
    with the reason; the outputs are still compared; nothing is called twice."""
    pytester.makepyfile(test_plain=PLAIN)
    args = [*fast_args, "--hwopt-max-time=30", "--hwopt-json=out.json", "-p", "no:randomly"]
    if how == "option":
        args.append("--hwopt-disable")
    else:
        pytester.makeini("[pytest]\nhwopt_disable = true\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*outputs of fast differ from slow*"])
    doc = results_of(pytester)
    by_kind = {(c["test"].rsplit("::", 1)[1], c["kind"]): c for c in doc["checks"]}
    for kind in ("speedup", "latency"):
        check = by_kind[("test_speed", kind)]
        assert check["status"] == "skipped"
        assert check["reason"].startswith("timing off (--hwopt-disable)")
    assert by_kind[("test_speed", "accuracy")]["status"] == "passed"
    assert by_kind[("test_wrong_outputs_still_fail", "accuracy")]["status"] == "failed"
    assert {len(r["samples"]) for r in doc["results"]} == {1}
    assert doc["environment"]["settings"]["disable"] is True
    assert {t["stopped"] for t in doc["tests"]} == {"single call"}
    result.stdout.fnmatch_lines(["*latency p95*skipped (timing off (--hwopt-disable)*",
                                 "hwopt: 2 test(s) run on cpu with timing off (--hwopt-disable:"
                                 " each variant called once); checks: *"])


def test_disable_runs_setup_once_and_awaits_once(pytester, fast_args):
    pytester.makepyfile(test_plain='''
import asyncio

EVENTS = []


async def fetch(value):
    EVENTS.append(("fetch", value))
    await asyncio.sleep(0)
    return value


def test_it(hwopt_bench):
    hwopt_bench.measure("fetch", fetch, setup=lambda: EVENTS.append("setup") or 7)


def test_zz_once():
    assert EVENTS == ["setup", ("fetch", 7)]
''')
    pytester.runpytest(*fast_args, "--hwopt-disable", "-p", "no:randomly", "-W",
                       "error").assert_outcomes(passed=2)


# ---- F. percentiles from too few samples --------------------------------------------------

SLOW_TAIL = '''
import time
from pytest_hwopt import hwopt

COUNT = [0]


def call():
    """50 ms; every tenth call 80 ms: the true p95 is 80 ms."""
    COUNT[0] += 1
    time.sleep(0.08 if COUNT[0] % 10 == 0 else 0.05)


@hwopt.latency(p50_ms=60, p95_ms=60)
def test_tail(hwopt_bench):
    hwopt_bench.measure("slow", call)
'''


def test_a_p95_budget_is_not_passed_from_a_handful_of_slow_calls(pytester, fast_args):
    """Six or so 50 ms samples, none of them the one slow call in ten: the largest sample
    is no 95% bound on p95, so the check stays inconclusive and says how many samples the
    budget needs; p50, which needs 5, is decided."""
    pytester.makepyfile(test_tail=SLOW_TAIL)
    result = pytester.runpytest(*fast_args, "--hwopt-max-time=0.6", "--hwopt-json=out.json")
    result.assert_outcomes(passed=1)  # an inconclusive check warns; it does not pass
    checks = {c["metric"]: c for c in results_of(pytester)["checks"]}
    p95 = checks["p95_ms"]
    assert p95["status"] == "inconclusive"
    if not p95["reason"].startswith("machine busy"):  # too busy a machine says so instead
        assert p95["reason"].startswith("too few samples: an upper bound on p95 at 95% needs "
                                        "at least 59 samples")
        assert p95["detail"]["samples_needed"] == 59
        assert p95["high"] is None
        assert checks["p50_ms"]["status"] == "passed"
    assert "processes" not in p95["detail"]  # no worker process repeats a biased estimate
    result.stdout.fnmatch_lines(["*InconclusiveWarning*p95 latency of slow*"])


def test_too_few_samples_fail_the_test_with_strict(pytester, fast_args):
    pytester.makepyfile(test_tail=SLOW_TAIL)
    result = pytester.runpytest(*fast_args, "--hwopt-max-time=0.3", "--hwopt-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*p95 latency of slow*inconclusive*"])
