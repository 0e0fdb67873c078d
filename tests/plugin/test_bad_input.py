"""Bad input gets a clear error naming what is wrong, and never a green run."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("hwopt.speedup(min=2.0, vs='slow', fastest=True)", "*hwopt_speedup: unknown argument 'fastest'*"),
        ("hwopt.speedup(vs='slow')", "*hwopt_speedup: missing required argument 'min'*"),
        ("hwopt.speedup(min=0, vs='slow')", "*hwopt_speedup: 'min' must be positive*"),
        ("hwopt.speedup(min=-1.5, vs='slow')", "*hwopt_speedup: 'min' must be positive*"),
        ("hwopt.speedup(min='fast', vs='slow')", "*hwopt_speedup: 'min' must be a number*"),
        ("hwopt.speedup(min=True, vs='slow')", "*hwopt_speedup: 'min' must be a number*"),
        ("hwopt.speedup(min={'cpu': 'x'}, vs='slow')", "*hwopt_speedup: 'min'*'cpu'*must be a number*"),
        ("hwopt.latency()", "*hwopt_latency: give at least one of p50_ms, p95_ms, p99_ms, mean_ms*"),
        ("hwopt.latency(p95_ms='10')", "*hwopt_latency: 'p95_ms' must be a number*"),
        ("pytest.mark.hwopt_latency(p90_ms=3)", "*hwopt_latency: unknown argument 'p90_ms'*"),
        ("hwopt.memory(max_mb=float('nan'))", "*hwopt_memory: 'max_mb' must be positive and finite*"),
        ("pytest.mark.hwopt_throughput()", "*hwopt_throughput: missing required argument 'min'*"),
        ("pytest.mark.hwopt_requires(gpu=True)", "*hwopt_requires: unknown argument 'gpu'*"),
    ],
)
def test_bad_marker_argument_errors_that_test(pytester, workloads, fast_args, marker, expected):
    pytester.makepyfile(test_it=workloads + f'''
import pytest

@{marker}
def test_bad(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)

def test_other_tests_still_run():
    pass
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([expected])


def test_ambiguous_candidate_lists_the_variants(pytester, workloads, fast_args):
    pytester.makepyfile(test_it=workloads + '''
@hwopt.latency(p95_ms=100)
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot tell which variant*measured 'slow', 'fast'*of=<variant>*"])


def test_vs_naming_no_variant(pytester, workloads, fast_args):
    pytester.makepyfile(test_it=workloads + '''
@hwopt.speedup(min=2, vs="naive")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*budget names variant 'naive', but the test measured 'slow', 'fast'*"])


def test_budget_without_measurement_fails(pytester, fast_args):
    pytester.makepyfile(test_it='''
from pytest_hwopt import hwopt

@hwopt.speedup(min=2, vs="naive")
def test_forgot_to_measure():
    pass

@hwopt.latency(p95_ms=2)
def test_registered_nothing(hwopt_bench):
    pass
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*budget markers (hwopt.speedup) but measured nothing*"])


def test_bad_measure_arguments(pytester, fast_args):
    pytester.makepyfile(test_it='''
import pytest

def test_it(hwopt_bench):
    with pytest.raises(TypeError, match="fn must be callable"):
        hwopt_bench.measure("a", 3)
    with pytest.raises(ValueError, match="items must be an int >= 1"):
        hwopt_bench.measure("a", lambda: 1, items=0)
    hwopt_bench.measure("a", lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        hwopt_bench.measure("a", lambda: 1)
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        hwopt_bench.measure("g", lambda: 1, cuda_graph=True)
''')
    pytester.runpytest(*fast_args).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hwopt-device=cuda"], "*--hwopt-device=cuda:*found: cpu*"),
        (["--hwopt-device=cuda:3"], "*--hwopt-device=cuda:3:*"),
        (["--hwopt-device=tpu"], "*--hwopt-device=tpu: expected auto, cpu, cuda or cuda:N*"),
        (["--hwopt-max-time=-1"], "*--hwopt-max-time=-1: expected seconds > 0*"),
        (["--hwopt-confidence=95"], "*--hwopt-confidence=95: expected a level in*"),
        (["--hwopt-min-rounds=1"], "*--hwopt-min-rounds=1: expected a whole number of rounds >= 3*"),
        (["--hwopt-backends=onnxruntime,tensort"], "*unknown backend(s) tensort; known: pytorch*"),
        (["--hwopt-device=cpu", "--hwopt-cache=cold"], "*--hwopt-cache=cold flushes a GPU's L2*"),
        (["--hwopt-cache=lukewarm"], "*--hwopt-cache=lukewarm: expected one of warm, cold*"),
    ],
)
def test_bad_options_are_usage_errors(pytester, args, message):
    pytester.makepyfile(test_it="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nhwopt_block_ms = fast\n")
    pytester.makepyfile(test_it="def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-block-ms=fast: expected milliseconds > 0*"])
