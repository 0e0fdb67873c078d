"""Budgets keyed by CPU feature, as a user writes them, on fake CPUs (none of this depends
on the instruction set of the machine running it)."""

from __future__ import annotations

import json

import pytest

from pytest_hwopt.hardware import devices

REAL_FACTS = devices.cpu_facts()
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

NO_VNNI = {"cpu": "AMD EPYC 7R13 Processor", "machine": "x86_64", "cpu_flags": ["avx2", "fma"]}
VNNI = {"cpu": "Intel(R) Xeon(R) Platinum 8488C", "machine": "x86_64",
        "cpu_flags": ["avx2", "fma", "avx512f", "avx512_vnni"]}

SOURCE = '''
@hwopt.speedup(min={"cpu": 2.0, "cpu+avx512_vnni": 1000.0}, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
'''


@pytest.mark.parametrize("facts,outcome,key", [(NO_VNNI, "passed", "cpu"),
                                               (VNNI, "failed", "cpu+avx512_vnni")])
def test_marker_budget_follows_the_cpu_feature(pytester, workloads, fast_args, monkeypatch,
                                               tmp_path, facts, outcome, key):
    monkeypatch.setattr(devices, "cpu_facts", lambda: dict(facts))
    pytester.makepyfile(test_it=workloads + SOURCE)
    out = tmp_path / "r.json"
    result = pytester.runpytest(*fast_args, f"--hwopt-json={out}")
    result.assert_outcomes(**{outcome: 1})
    doc = json.loads(out.read_text())
    assert doc["checks"][0]["budget_key"] == key
    env = doc["environment"]  # the real CPU's model and flags, whichever they are
    assert env["cpu"]
    assert ("cpu_flags" in env) == ("cpu_flags" in REAL_FACTS)


def test_budget_file_entry_with_a_feature_key(pytester, workloads, fast_args, monkeypatch):
    monkeypatch.setattr(devices, "cpu_facts", lambda: dict(NO_VNNI))
    pytester.makepyfile(test_it=workloads + '''
@hwopt.speedup(min=1000.0, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''')
    pytester.makefile(".toml", budgets='''
[[budget]]
test = "test_it.py::test_it"
device = "cpu-avx512_vnni"
speedup = { min = 2.0, vs = "slow" }
''')
    pytester.runpytest(*fast_args, "--hwopt-budgets=budgets.toml").assert_outcomes(passed=1)


def test_bad_feature_key_errors_naming_marker_key_and_flags(pytester, workloads, fast_args):
    pytester.makepyfile(test_it=workloads + '''
@hwopt.speedup(min={"cpu+avx512vnni": 2.0}, vs="slow")
def test_it(hwopt_bench):
    hwopt_bench.measure("slow", slow)
''')
    result = pytester.runpytest(*fast_args)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*hwopt_speedup: 'min' per device: device key "
                                 "'cpu+avx512vnni': unknown CPU flag 'avx512vnni'; "
                                 "recognised flags: avx2, fma*"])


@pytest.mark.parametrize("facts,outcome", [(NO_VNNI, "skipped"), (VNNI, "passed")])
def test_requires_a_cpu_feature(pytester, workloads, fast_args, monkeypatch, facts, outcome):
    """``hwopt.requires(device="cpu+avx512_vnni")`` runs the test on CPUs with the flag and
    skips it elsewhere, naming the CPU's flags."""
    monkeypatch.setattr(devices, "cpu_facts", lambda: dict(facts))
    pytester.makepyfile(test_it=workloads + '''
@hwopt.requires(device=["cpu+avx512_vnni", "cuda"])
def test_it(hwopt_bench):
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args, "-rs")
    if outcome == "skipped":
        # the only performance test skipped: the run fails, as a run that measured nothing
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*requires device cpu+avx512_vnni or cuda; measuring on "
                                     "cpu (AMD EPYC 7R13 Processor; flags avx2, fma)*"])
    else:
        result.assert_outcomes(passed=1)


def test_requires_with_a_malformed_feature_key_errors(pytester, workloads, fast_args):
    pytester.makepyfile(test_it=workloads + '''
@hwopt.requires(device="cpu+avx9000")
def test_it(hwopt_bench):
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args)
    result.assert_outcomes(errors=1)  # at set-up, as every bad marker argument
    result.stdout.fnmatch_lines(["*hwopt_requires: device key 'cpu+avx9000': unknown CPU flag*"])
    result.stdout.no_fnmatch_line("*During handling of the above exception*")
