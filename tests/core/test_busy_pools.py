"""A run whose thread pools had fewer free cores than threads decides nothing."""

from __future__ import annotations

from pytest_hwopt.core.checks import Check, Status
from pytest_hwopt.core.contention import Contention, oversubscribed
from pytest_hwopt.core.outcomes import undecided_because


def busy(cores: float | None, own: float | None = 1.9) -> Contention:
    return Contention(other_busy_cores=cores, steal_fraction=0.0, load1=1.0, own_cores=own)


def test_two_threads_with_a_neighbour_on_one_of_two_cores_are_oversubscribed():
    why = oversubscribed(busy(0.98), threads=2, cores=2)
    assert why == ("machine busy: other processes kept 0.98 of 2 cores busy while every pool "
                   "ran 2 threads")


def test_free_cores_for_every_thread_or_one_thread_decide_as_usual():
    assert oversubscribed(busy(0.2), threads=2, cores=2) == ""  # kernel threads, a blip
    assert oversubscribed(busy(1.9), threads=1, cores=2) == ""  # judged per sample instead
    assert oversubscribed(busy(2.0), threads=4, cores=8) == ""
    assert oversubscribed(busy(None), threads=2, cores=2) == ""  # no /proc/stat: nothing said


def test_work_that_used_one_core_is_judged_per_sample_whatever_the_pools_size():
    # a pure-Python loop under --hwopt-threads=2: the pools are idle, nothing waits at them
    assert oversubscribed(busy(1.0, own=0.98), threads=2, cores=2) == ""
    assert oversubscribed(busy(1.0, own=None), threads=2, cores=2) != ""  # unknown: careful


def test_sampled_checks_become_inconclusive_keeping_their_figures():
    checks = [
        Check(kind="speedup", variant="ort", vs="eager", status=Status.PASSED, budget=1.9,
              measured=2.2, low=2.0, high=2.4, message="speedup of ort vs eager: 2.20x"),
        Check(kind="accuracy", variant="ort", vs="eager", status=Status.PASSED,
              message="outputs agree"),
        Check(kind="latency", variant="ort", status=Status.FAILED, message="p95 too slow"),
    ]
    out = undecided_because(checks, "machine busy: x", {"speedup", "latency"})
    assert [c.status for c in out] == [Status.INCONCLUSIVE, Status.PASSED, Status.INCONCLUSIVE]
    assert out[0].measured == 2.2 and out[0].reason == "machine busy: x"
    assert out[0].point_passed is True and out[2].point_passed is False
    assert out[0].message == "speedup of ort vs eager: 2.20x (inconclusive: machine busy: x)"
