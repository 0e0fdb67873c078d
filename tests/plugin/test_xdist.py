"""Parallel runs: workers take turns on a device, and their results merge into one report."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("xdist")


def test_results_from_workers_merge_into_one_json(pytester, workloads, fast_args, tmp_path):
    out = tmp_path / "merged.json"
    pytester.makepyfile(test_it=workloads + '''
import pytest

@pytest.mark.parametrize("i", range(4))
@hwopt.speedup(min=2.0, vs="slow")
def test_pair(hwopt_bench, i):
    hwopt_bench.measure("slow", slow)
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest_subprocess(*fast_args, "-n", "2", f"--hwopt-json={out}")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*hwopt summary*", "*hwopt: 4 test(s) measured on cpu*"])
    doc = json.loads(out.read_text())
    assert sorted({c["test"] for c in doc["checks"]}) == [
        f"test_it.py::test_pair[{i}]" for i in range(4)]
    assert len(doc["results"]) == 8


def test_device_lock_serialises_measurements(tmp_path):
    """Two processes holding the same device's lock never overlap."""
    import multiprocessing
    import time

    from pytest_hwopt.hardware.devlock import device_lock

    log = tmp_path / "log"

    def hold(tag: str) -> None:
        with device_lock("cpu-test-lock"):
            with open(log, "a") as fh:
                fh.write(f"{tag} in {time.time()}\n")
            time.sleep(0.2)
            with open(log, "a") as fh:
                fh.write(f"{tag} out {time.time()}\n")

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=hold, args=(t,)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    events = [line.split()[:2] for line in log.read_text().splitlines()]
    # each "in" is followed by the same process's "out": no interleaving
    assert [e[1] for e in events] == ["in", "out", "in", "out"]
    assert events[0][0] == events[1][0] and events[2][0] == events[3][0]
