"""Every pool a variant touches runs with the session's thread count, recorded per result."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

try:  # imported here: in-process pytester runs cannot import PyTorch a second time
    import torch
except ImportError:
    torch = None

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
needs_torch = pytest.mark.skipif(torch is None, reason="needs PyTorch")

#: records, from inside the measured variant, what threadpoolctl and PyTorch report
INSIDE = '''
import numpy as np
from threadpoolctl import threadpool_info

seen = {}


def test_pools(hwopt_bench):
    import torch  # imported in the body, after the fixture was set up

    a = np.ones((64, 64))

    def dot():
        if not seen:
            seen["blas"] = [lib["num_threads"] for lib in threadpool_info()
                            if lib["user_api"] == "blas"]
            seen["torch"] = torch.get_num_threads()
        return a @ a

    hwopt_bench.measure("dot", dot)
    hwopt_bench.note("seen", seen)  # filled while the variant runs, after this body
'''


def _blas_visible() -> bool:
    from threadpoolctl import threadpool_info

    return any(lib["user_api"] == "blas" for lib in threadpool_info())


def _run(pytester: pytest.Pytester, fast_args: tuple[str, ...], source: str,
         *args: str) -> dict:
    pytester.makepyfile(test_it=source)
    out = pytester.path / "out.json"
    result = pytester.runpytest(*fast_args, "--hwopt-report-only", f"--hwopt-json={out}", *args)
    result.assert_outcomes(passed=1)
    return json.loads(out.read_text())


@needs_torch
def test_inside_a_variant_blas_and_torch_run_with_the_option(pytester, fast_args):
    if not _blas_visible():
        pytest.skip("numpy has no BLAS library threadpoolctl can see")
    doc = _run(pytester, fast_args, INSIDE, "--hwopt-threads=1")
    (result,) = doc["results"]
    seen = doc["tests"][0]["notes"]["seen"]
    assert seen["blas"] and set(seen["blas"]) == {1}  # numpy's BLAS pool, not only torch's
    assert seen["torch"] == 1
    assert (result["threads"], result["threads_source"]) == (1, "option")
    assert result["thread_pools"]["torch"] == 1
    assert {v for k, v in result["thread_pools"].items() if "blas" in k} == {1}


@needs_torch
def test_by_default_the_idle_cores_at_start_and_the_same_count_everywhere(pytester, fast_args):
    if not _blas_visible():
        pytest.skip("numpy has no BLAS library threadpoolctl can see")
    import os

    doc = _run(pytester, fast_args, INSIDE)
    (result,) = doc["results"]
    count = result["threads"]
    assert 1 <= count <= len(os.sched_getaffinity(0))
    assert re.fullmatch(r"idle cores \(\d+ of \d+ idle at start.*\)", result["threads_source"])
    seen = doc["tests"][0]["notes"]["seen"]
    assert set(seen["blas"]) == {count} and seen["torch"] == count
    # the environment and the settings in the results say the same
    assert doc["environment"]["threads"] == count
    assert doc["environment"]["settings"]["threads"] == count


@needs_torch
def test_backends_are_built_with_the_chosen_count(pytester, fast_args):
    """Backends take the count at construction: it is chosen before any is built, for the
    built-in ones and a conftest's alike."""
    pytester.makeconftest('''
from pytest_hwopt.plugin import settings_of

built_with = []


def pytest_hwopt_backends(config):
    built_with.append(settings_of(config).threads)
    return []
''')
    doc = _run(pytester, fast_args, '''
import pytest
from conftest import built_with
from pytest_hwopt._plugin.state import state_of


@pytest.mark.parametrize("hwopt_backend", ["pytorch"], indirect=True)
def test_backend(hwopt_backend, hwopt_bench, request):
    backends = state_of(request.config).backends()
    hwopt_bench.note("conftest", list(built_with))
    hwopt_bench.note("onnxruntime", backends["onnxruntime"].threads)
    hwopt_bench.note("openvino", backends["openvino"].threads)
    hwopt_bench.measure("sum", lambda: sum(range(1000)))
''')
    count = doc["results"][0]["threads"]
    notes = doc["tests"][0]["notes"]
    assert notes == {"conftest": [count], "onnxruntime": count, "openvino": count}


def test_the_blas_pool_is_restored_after_the_run(pytester, fast_args):
    if not _blas_visible():
        pytest.skip("numpy has no BLAS library threadpoolctl can see")
    pytester.makepyfile(test_it='''
import numpy as np
from threadpoolctl import threadpool_info


def blas():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_restored(hwopt_bench):
    before = blas()
    hwopt_bench.measure("dot", lambda: np.ones(8) @ np.ones(8))
    hwopt_bench.run()
    assert blas() == before
''')
    pytester.runpytest(*fast_args, "--hwopt-threads=1").assert_outcomes(passed=1)


def test_measure_and_compare_apply_threads_too():
    np = pytest.importorskip("numpy")
    from threadpoolctl import threadpool_info

    from pytest_hwopt import compare, measure
    from pytest_hwopt.core.engine import EngineConfig

    quick = EngineConfig(warmup_ms=2, block_ms=2, min_rounds=3, max_time_s=0.5)
    seen: list[list[int]] = []

    def dot() -> object:
        if not seen:
            seen.append([lib["num_threads"] for lib in threadpool_info()
                         if lib["user_api"] == "blas"])
        return np.ones(16) @ np.ones(16)

    m = measure(dot, config=quick, threads=1)
    assert (m.extra.get("threads"), m.extra.get("threads_source")) == (1, "option")
    assert set(seen[0]) <= {1}
    c = compare(dot, dot, config=quick)
    assert c.baseline.extra.get("threads") == c.candidate.extra.get("threads")
    assert str(c.candidate.extra.get("threads_source")).startswith(("idle cores", "usable"))
    with pytest.raises(ValueError, match=">= 1"):
        measure(dot, config=quick, threads=0)


def test_a_run_without_performance_tests_loads_no_thread_library(pytester):
    pytester.makepyfile(test_it='''
import sys


def test_plain():
    assert not {"threadpoolctl", "numpy"} & set(sys.modules)
''')
    result = pytester.runpytest_subprocess("--hwopt-device=cpu", "-p", "no:cacheprovider",
                                           "-p", "no:benchmark")
    result.assert_outcomes(passed=1)


def test_help_names_the_pools():
    out = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, timeout=120).stdout
    assert "--hwopt-threads" in out and "idle" in out


# the project's filterwarnings = error reaches in-process pytester sessions
@pytest.mark.filterwarnings("default::pytest_hwopt.InconclusiveWarning")
def test_pools_without_a_free_core_per_thread_make_the_verdict_inconclusive(
        pytester, fast_args, monkeypatch):
    """With --hwopt-threads=2 and a neighbour keeping one of two cores busy, every pool's
    barrier waits for a thread the scheduler gave away: the speedup is inconclusive, with the
    reason, and the measured figure stays in the JSON."""
    from pytest_hwopt.core import contention

    def neighbour_on_one_core(before, after):
        return contention.Contention(other_busy_cores=1.0, steal_fraction=0.0, load1=2.0,
                                     own_cores=1.8)

    monkeypatch.setattr(contention, "contention", neighbour_on_one_core)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    pytester.makepyfile(test_it='''
from pytest_hwopt import hwopt

@hwopt.speedup(min=1.5, vs="slow")
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", lambda: sum(range(3000)))
    hwopt_bench.measure("fast", lambda: sum(range(1000)))
''')
    result = pytester.runpytest(*fast_args, "--hwopt-threads=2", "--hwopt-json=out.json")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*InconclusiveWarning*machine busy: other processes kept "
                                 "1.00 of 2 cores busy while every pool ran 2 threads*"])
    check = json.loads((pytester.path / "out.json").read_text())["checks"][0]
    assert check["status"] == "inconclusive" and check["measured"] > 1.5
