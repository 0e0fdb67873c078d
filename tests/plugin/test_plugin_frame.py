"""The plugin as installed: entry point, options, markers, requires, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_help_lists_every_option(pytester):
    from pytest_hwopt.core.settings import OPTIONS

    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*inference performance budgets (pytest-hwopt)*"])
    for opt in OPTIONS:
        result.stdout.fnmatch_lines([f"*{opt.cli}*"])


def test_markers_are_registered(pytester):
    result = pytester.runpytest("--markers")
    for name in ("speedup", "latency", "throughput", "memory", "accuracy", "requires",
                 "cold_start", "energy", "roofline"):
        result.stdout.fnmatch_lines([f"@pytest.mark.hwopt_{name}(*"])


def test_plugin_can_be_disabled(pytester):
    pytester.makepyfile(test_it='''
import pytest

@pytest.mark.hwopt_speedup(min=2, vs="a")
def test_x():
    pass
''')
    result = pytester.runpytest_subprocess("-p", "no:hwopt", "--strict-markers")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'hwopt_speedup' not found in `markers`*"])


def test_requires_skips_with_the_reason(pytester, fast_args):
    pytester.makepyfile(test_it='''
from pytest_hwopt import hwopt

@hwopt.requires(device="cuda")
def test_gpu():
    pass

@hwopt.requires(backends=["tensorrt"])
def test_trt():
    pass

@hwopt.requires(backends="no-such-backend")
def test_unknown():
    pass

@hwopt.requires(device="cpu")
def test_cpu():
    pass
''')
    result = pytester.runpytest(*fast_args, "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "*hwopt: requires device cuda; measuring on cpu*",
        "*hwopt: backend tensorrt unavailable on cpu: TensorRT needs an NVIDIA GPU*",
        "*requires backend 'no-such-backend', which is not registered*",
    ])


def test_hwopt_device_fixture(pytester):
    pytester.makepyfile(test_it='''
def test_it(hwopt_device):
    assert hwopt_device.kind == "cpu" and hwopt_device.index is None
    assert hwopt_device.torch_device == "cpu"
    hwopt_device.synchronize()
    assert hwopt_device.facts["logical_cores"] >= 1
''')
    pytester.runpytest("--hwopt-device=cpu", "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_loading_the_plugin_imports_no_framework():
    """pytest startup with the plugin must not pay for torch, onnx or a runtime."""
    code = (
        "import sys, pytest\n"
        "rc = pytest.main(['--co', '-q', '-p', 'no:cacheprovider', '--hwopt-device=cpu',"
        " '-p', 'no:benchmark', '--rootdir', '/', '/dev/null'])\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'tensorrt', 'numpy',"
        " 'pynvml', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd="/")
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_measure_and_compare_without_pytest():
    from pytest_hwopt import compare, measure
    from pytest_hwopt.core.engine import EngineConfig

    quick = EngineConfig(warmup_ms=2, block_ms=2, min_rounds=5, max_time_s=1)
    m = measure(lambda: sum(range(2000)), config=quick)
    assert m.median_ms > 0 and len(m.samples_ms) >= 5
    c = compare(lambda: sum(range(20_000)), lambda: sum(range(2_000)), min_speedup=2,
                config=quick)
    assert c.low <= c.speedup <= c.high and c.speedup > 2
    assert c.check is not None and c.check.passed
    assert "b vs a:" in str(c)


def test_a_run_whose_performance_tests_all_skipped_is_not_green(pytester):
    pytester.makepyfile(test_it='''
from pytest_hwopt import hwopt

@hwopt.requires(device="cuda")
@hwopt.speedup(min=2, vs="a")
def test_gpu_only(hwopt_bench):
    pass

def test_unrelated():
    pass
''')
    result = pytester.runpytest("--hwopt-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*hwopt: all 1 performance test(s) were skipped*"])


def test_some_skipped_is_fine(pytester, workloads, fast_args):
    pytester.makepyfile(test_it=workloads + '''
@hwopt.requires(device="cuda")
def test_gpu_only(hwopt_bench):
    pass

def test_cpu(hwopt_bench):
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK


def test_plugin_modules_load_as_plain_byte_code_and_tests_keep_assert_messages(pytester):
    """pytest rewrites the asserts of every module in a plugin's package. The plugin's modules
    hold no test assertions, so they load from ordinary byte code (cached even where
    ``PYTHONDONTWRITEBYTECODE`` stops pytest from caching rewritten code); the user's test files
    keep pytest's assertion messages."""
    pytester.makepyfile(test_it='''
from _pytest.assertion.rewrite import AssertionRewritingHook

import pytest_hwopt.core.kinds as kinds


def test_plugin_module_is_not_rewritten():
    assert not isinstance(kinds.__spec__.loader, AssertionRewritingHook)


def test_user_asserts_are_still_rewritten():
    measured = [1, 2]
    assert measured == [1, 3]
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "E       assert [1, 2] == [1, 3]" in result.stdout.str()
