"""The workload pair with a known cost ratio, the two budgets, and the test files.

``fast`` runs a pure-Python loop ``n`` times and ``slow`` the same loop ``3n``
times, so the true speedup is :data:`TRUE_RATIO`. The budgets lie 15% either
side of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final, cast

from benchmarks.verdicts.records import QuietRatio
from pytest_hwopt.core.stats import median

TRUE_RATIO: Final = 3.0
BUDGETS: Final = (2.55, 3.45)  # 15% below and above the true ratio
RIGHT: Final = {2.55: True, 3.45: False}  # the right verdict: does the claim hold?
FAST_TARGET_MS: Final = 0.3  # the fast variant should take about 0.2-0.5 ms

WORK_SRC: Final = '''\
def work(n):
    s = 0
    for i in range(n):
        s ^= i
    return s
'''

# the slow variant: one call over 3n iterations (as specified), or three calls over n
WORKLOADS: Final = {"3n": "work(3 * N)", "repeat": "(work(N), work(N), work(N))"}

HWOPT_TEST: Final = '''\
from pytest_hwopt import hwopt

N = {n}

{work}

@hwopt.speedup(min={budget!r}, vs="slow")
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", lambda: {slow})
    hwopt_bench.measure("fast", lambda: work(N))
'''

BENCHMARK_TEST: Final = '''\
N = {n}

{work}

def test_slow(benchmark):
    benchmark(lambda: {slow})

def test_fast(benchmark):
    benchmark(lambda: work(N))
'''

PYTEST_INI: Final = "[pytest]\n"  # pins the rootdir: no configuration from above the temp dir


def _compile_work() -> Callable[[int], int]:
    namespace: dict[str, object] = {}
    exec(WORK_SRC, namespace)  # the very source the test files contain
    return cast("Callable[[int], int]", namespace["work"])


work: Final = _compile_work()
"""``work(n)``: the loop of both variants, ``n`` iterations; returns a checksum."""


def render_test_file(template: str, n: int, workload: str, **extra: object) -> str:
    """The source of a test file from ``HWOPT_TEST`` or ``BENCHMARK_TEST``.

    ``workload`` is a key of :data:`WORKLOADS`; ``extra`` fills the template's
    other fields (``budget`` for ``HWOPT_TEST``). Raises ``KeyError`` for an
    unknown workload.
    """
    return template.format(n=n, work=WORK_SRC, slow=WORKLOADS[workload], **extra)


def calibrate(target_ms: float = FAST_TARGET_MS) -> int:
    """``n`` (a multiple of 100) for which ``work(n)`` takes about ``target_ms`` ms here."""
    n = 1000
    for _ in range(4):
        best = math.inf
        for _ in range(50):
            t0 = time.perf_counter()
            work(n)
            best = min(best, time.perf_counter() - t0)
        n = max(100, round(n * target_ms / (best * 1000.0)))
    return int(round(n, -2))


def quiet_ratio(n: int, workload: str, pairs: int = 400) -> QuietRatio:
    """In-process timing of the slow / fast variant, alternating call by call.

    Returns ``fast_ms`` and ``slow_ms`` (medians of ``pairs`` calls, ms),
    ``ratio_of_medians`` and ``ratio_of_minima`` (slow / fast).
    """
    if workload == "3n":
        def slow_fn() -> object:
            return work(3 * n)
    else:
        def slow_fn() -> object:
            return (work(n), work(n), work(n))
    slow: list[float] = []
    fast: list[float] = []
    for _ in range(20):
        slow_fn(), work(n)
    for _ in range(pairs):
        t0 = time.perf_counter()
        slow_fn()
        t1 = time.perf_counter()
        work(n)
        t2 = time.perf_counter()
        slow.append(t1 - t0)
        fast.append(t2 - t1)
    return {"fast_ms": median(fast) * 1e3, "slow_ms": median(slow) * 1e3,
            "ratio_of_medians": median(slow) / median(fast),
            "ratio_of_minima": min(slow) / min(fast)}


def outside_band(low: float | None, high: float | None) -> bool:
    """Whether an interval lies wholly outside ``min(BUDGETS)``-``max(BUDGETS)``.

    Such a verdict is confident and far from the truth: one budget away from a
    confident wrong verdict. ``None`` bounds (no interval) give ``False``.
    """
    return low is not None and high is not None and (low > max(BUDGETS) or high < min(BUDGETS))
