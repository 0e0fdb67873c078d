"""The workload pairs, their budgets, and the test files.

Synthetic pair (``3n``, ``repeat``): ``fast`` runs a pure-Python loop ``n``
times and ``slow`` the same loop ``3n`` times, so the true speedup is
:data:`TRUE_RATIO`; the budgets lie 15% either side of it.

Model pair (``ort-mlp``): ONNX Runtime vs eager PyTorch on the tests' MLP
(64-128-16, GELU) at batch 32, multi-threaded (the same explicit thread count
for every pool of both variants), prepared through the plugin's own model path
(``hwopt_bench.model(..., backend="onnxruntime")``). Its true ratio is not
known in advance: the benchmark measures it first on the quiet machine
(``runs.measure_truth``) and puts the budgets a margin either side of it.
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
MODEL_WORKLOADS: Final = {"ort-mlp": "ONNX Runtime vs eager PyTorch, MLP 64-128-16, batch 32"}
ALL_WORKLOADS: Final = (*WORKLOADS, *MODEL_WORKLOADS)
MARGIN: Final = 0.15  # budgets this fraction either side of the true ratio
CALIBRATION_BUDGET: Final = 1e-3  # the model test's budget while its truth is measured

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

MODEL_SRC: Final = '''\
import torch


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(),
                                       torch.nn.Linear(128, 16))

    def forward(self, x):
        return self.net(x)


def mlp():
    torch.manual_seed(0)
    return MLP().eval(), torch.randn(32, 64)
'''

MODEL_HWOPT_TEST: Final = '''\
from pytest_hwopt import hwopt

{model}

@hwopt.speedup(min={budget!r}, vs="pytorch")
def test_pair(hwopt_bench):
    model, x = mlp()
    hwopt_bench.model(model, (x,), backend="onnxruntime")
'''

# what a pytest-benchmark user writes: export, a session with the same threads and
# spinning off, the same thread count for torch; one benchmark test per variant
MODEL_BENCHMARK_TEST: Final = '''\
import os
import tempfile

import onnxruntime as ort

{model}
THREADS = {threads}
torch.set_num_threads(THREADS)
MODEL, X = mlp()


def session():
    path = os.path.join(tempfile.mkdtemp(), "mlp.onnx")
    torch.onnx.export(MODEL, (X,), path, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def test_slow(benchmark):
    with torch.inference_mode():
        benchmark(MODEL, X)


def test_fast(benchmark):
    sess = session()
    feed = {{sess.get_inputs()[0].name: X.numpy()}}
    benchmark(sess.run, None, feed)
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


def render_model_test(tool: str, *, budget: float | None = None, threads: int = 1) -> str:
    """The source of the model pair's test file for ``tool``.

    ``"hwopt"``: one test with ``@hwopt.speedup(min=budget, vs="pytorch")``
    (``budget`` required); ``"pytest-benchmark"``: tests ``test_slow`` (eager)
    and ``test_fast`` (ONNX Runtime) with ``threads`` threads in torch and ORT.
    Raises ``ValueError`` for another tool or a missing budget.
    """
    if tool == "hwopt":
        if budget is None:
            raise ValueError("the hwopt model test needs a budget")
        return MODEL_HWOPT_TEST.format(model=MODEL_SRC, budget=budget)
    if tool == "pytest-benchmark":
        return MODEL_BENCHMARK_TEST.format(model=MODEL_SRC, threads=int(threads))
    raise ValueError(f"no model test for tool {tool!r}")


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


def outside_band(low: float | None, high: float | None,
                 band: tuple[float, float] = BUDGETS) -> bool:
    """Whether an interval lies wholly outside ``min(band)``-``max(band)`` (the two budgets).

    Such a verdict is confident and far from the truth: one budget away from a
    confident wrong verdict. ``None`` bounds (no interval) give ``False``.
    """
    return low is not None and high is not None and (low > max(band) or high < min(band))
