"""What variants return, as an accuracy budget compares it: optional ``None`` outputs, nested
structures, flat tuples, Python lists of numbers, strings and flags."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(autouse=True)
def not_an_xdist_worker(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def test_a_flat_tuple_matches_a_structure_with_none(pytester, fast_args):
    # what a runtime returns for a module that returns (logits, None, {"h": (a, b)})
    pytester.makepyfile(test_it='''
import numpy as np
from pytest_hwopt import hwopt

x = np.arange(6.0)


@hwopt.accuracy(vs="eager", atol=1e-6)
def test_it(hwopt_bench):
    hwopt_bench.measure("eager", lambda: (x * 2, None, {"h": (x + 1, x - 1)}))
    hwopt_bench.measure("runtime", lambda: [x * 2, x + 1, x - 1])
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*accuracy vs eager*runtime*passed*"])


def test_a_real_structure_difference_names_a_few_paths_and_counts_the_rest(pytester, fast_args):
    pytester.makepyfile(test_it='''
import numpy as np
from pytest_hwopt import hwopt


@hwopt.accuracy(vs="eager")
def test_it(hwopt_bench):
    hwopt_bench.measure("eager", lambda: {f"layer{i}": np.ones(2) for i in range(20)})
    hwopt_bench.measure("other", lambda: {"layer0": np.ones(2), "extra": np.ones(2)})
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(failed=1)
    assert ("outputs of other do not match eager: output structure differs: candidate has 2 "
            "output(s), reference has 20; only the candidate has output['extra']; only the "
            "reference has output['layer1'], output['layer2'], output['layer3'], "
            "output['layer4'], output['layer5'] and 14 more") in result.stdout.str()


def test_strings_and_flags_are_compared_by_equality(pytester, fast_args):
    pytester.makepyfile(test_it='''
import numpy as np
from pytest_hwopt import hwopt

scores = np.array([0.25, 0.75])


@hwopt.accuracy(vs="eager", of="same")
@hwopt.accuracy(vs="eager", of="renamed")
def test_it(hwopt_bench):
    hwopt_bench.measure("eager", lambda: {"label": "cat", "ok": True, "scores": scores})
    hwopt_bench.measure("same", lambda: {"label": "cat", "ok": True, "scores": scores.copy()})
    hwopt_bench.measure("renamed", lambda: {"label": "dog", "ok": True, "scores": scores})
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*accuracy vs eager*same*passed*"])
    text = result.stdout.str()
    assert "outputs of renamed differ from eager: " in text
    assert "not equal: output['label']: 'dog' != 'cat'" in text
    assert "Traceback" not in text


def test_long_python_lists_are_compared_as_arrays(pytester, tmp_path):
    out = tmp_path / "r.json"
    pytester.makepyfile(test_it='''
import random
from pytest_hwopt import hwopt

values = [random.random() for _ in range(100_000)]


@hwopt.accuracy(vs="eager", atol=1e-9)
def test_it(hwopt_bench):
    hwopt_bench.measure("eager", lambda: values)
    hwopt_bench.measure("copy", lambda: list(values))
''')
    result = pytester.runpytest("--hwopt-device=cpu", "--hwopt-max-time=2",
                                "--hwopt-warmup-ms=5", "--hwopt-min-rounds=3",
                                "--hwopt-block-ms=3", "-p", "no:cacheprovider",
                                f"--hwopt-json={out}")
    result.assert_outcomes(passed=1)
    [check] = [c for c in json.loads(out.read_text())["checks"] if c["kind"] == "accuracy"]
    assert check["status"] == "passed" and check["detail"]["elements"] == 100_000


def test_a_list_element_is_located_like_python_indexes_it(pytester, fast_args):
    pytester.makepyfile(test_it='''
from pytest_hwopt import hwopt


@hwopt.accuracy(vs="eager", atol=1e-3)
def test_it(hwopt_bench):
    hwopt_bench.measure("eager", lambda: [[1.0, 2.0], [3.0, 4.0]])
    hwopt_bench.measure("off", lambda: [[1.0, 2.0], [3.0, 4.5]])
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(failed=1)
    assert ("outputs of off differ from eager: max abs error 0.5, max rel error 0.125 at "
            "output[1][1],") in result.stdout.str()
