"""An inconclusive check is an outcome of its own: it warns, a clear miss fails.

The pytester sessions plant checks of a chosen status through the ``pytest_hwopt_checks``
hook, so the outcome does not depend on how fast this machine is.
"""

from __future__ import annotations

import json
import warnings

import pytest

import pytest_hwopt
from pytest_hwopt.core.checks import FAILED, INCONCLUSIVE, PASSED, Check
from pytest_hwopt.core.outcomes import (
    InconclusiveWarning,
    inconclusive_text,
    outcome,
    reason_of,
    warn_inconclusive,
)
from pytest_hwopt.core.settings import OptionError, parse_settings

BUSY = "machine busy: 83% of samples disturbed"

# this project runs its tests with filterwarnings = error; the pytester sessions run in-process
# under the outer filters, so let the warning stand as it would for a user with no filter
pytestmark = pytest.mark.filterwarnings("default::pytest_hwopt.InconclusiveWarning")


def check(status, kind="speedup", **kw):
    return Check(kind=kind, variant="fast", vs="slow", status=status, budget=2.0,
                 measured=1.9, low=1.7, high=2.1, unit="x", message=f"{kind} {status}", **kw)


# ---- the pure rule -----------------------------------------------------------------------

def test_inconclusive_warning_is_exported_as_a_user_warning():
    assert pytest_hwopt.InconclusiveWarning is InconclusiveWarning
    assert issubclass(InconclusiveWarning, UserWarning)
    assert "InconclusiveWarning" in pytest_hwopt.__all__


def test_outcome_fails_clear_misses_and_warns_inconclusive():
    passed, missed = check(PASSED), check(FAILED)
    straddling = check(INCONCLUSIVE, point_passed=False)
    wrong_outputs = check(FAILED, kind="accuracy")
    decided = outcome([passed, missed, straddling, wrong_outputs])
    assert decided.failing == (wrong_outputs, missed)  # wrong outputs first
    assert decided.warned == (straddling,)


def test_outcome_strict_and_report_only():
    missed, straddling = check(FAILED), check(INCONCLUSIVE, point_passed=True)
    assert outcome([missed, straddling], strict=True).failing == (missed, straddling)
    assert outcome([missed, straddling], strict=True).warned == ()
    nothing = outcome([missed, straddling], strict=True, report_only=True)
    assert nothing.failing == () and nothing.warned == ()


def test_reason_defaults_to_the_straddled_interval():
    assert reason_of(check(INCONCLUSIVE)) == "interval straddles the budget"
    assert reason_of(check(PASSED)) == ""
    assert inconclusive_text(check(INCONCLUSIVE)) == (
        "speedup inconclusive (inconclusive: interval straddles the budget)")
    if "reason" in Check.__dataclass_fields__:  # the check's own reason, once it has one
        busy = check(INCONCLUSIVE, reason=BUSY)
        assert reason_of(busy) == BUSY
        assert inconclusive_text(busy).endswith(f"(inconclusive: {BUSY})")


def test_warn_inconclusive_points_at_the_test_and_reports_escalations():
    checks = [check(INCONCLUSIVE), check(INCONCLUSIVE, kind="latency")]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert warn_inconclusive(checks, "test_x.py", 7) == []
    assert [(w.category, w.filename, w.lineno) for w in seen] == [
        (InconclusiveWarning, "test_x.py", 7)] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconclusiveWarning)
        escalated = warn_inconclusive(checks, "test_x.py", 7)
    assert [text.split(" (")[0] for text in escalated] == ["speedup inconclusive",
                                                           "latency inconclusive"]


def test_strict_setting():
    assert parse_settings({}).strict is False
    assert parse_settings({"hwopt_strict": True}).strict is True
    assert parse_settings({"hwopt_strict": "yes"}).strict is True
    with pytest.raises(OptionError, match="hwopt_strict = maybe"):
        parse_settings({"hwopt_strict": "maybe"})


# ---- in a pytest run ---------------------------------------------------------------------

CONFTEST = '''
from pytest_hwopt.core.checks import Check

BUSY = "machine busy: 83% of samples disturbed"
PLAN = {"test_inconclusive": ["inconclusive"], "test_clear": ["passed"],
        "test_missed": ["failed", "inconclusive"]}


def pytest_hwopt_checks(item, checks, measurements):
    for status in PLAN[item.name]:
        extra = {"reason": BUSY} if (status == "inconclusive"
                                     and "reason" in Check.__dataclass_fields__) else {}
        checks.append(Check(kind="speedup", variant="fast", vs="slow", status=status,
                            budget=2.0, measured=1.9, low=1.7, high=2.1, unit="x",
                            point_passed=False, message=f"speedup of fast vs slow: {status}",
                            **extra))
'''

TESTS = '''
def test_inconclusive(hwopt_bench):
    hwopt_bench.measure("slow", lambda: 1)
    hwopt_bench.measure("fast", lambda: 1)


def test_clear(hwopt_bench):
    hwopt_bench.measure("slow", lambda: 1)
    hwopt_bench.measure("fast", lambda: 1)
'''

MISSED = '''

def test_missed(hwopt_bench):
    hwopt_bench.measure("slow", lambda: 1)
    hwopt_bench.measure("fast", lambda: 1)
'''

ARGS = ("--hwopt-device=cpu", "--hwopt-max-time=0.3", "--hwopt-warmup-ms=0",
        "--hwopt-min-rounds=3", "--hwopt-block-ms=1", "-p", "no:cacheprovider")


@pytest.fixture
def planted(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it=TESTS)
    return pytester


def test_inconclusive_warns_and_passes_by_default(planted, tmp_path):
    out = tmp_path / "r.json"
    result = planted.runpytest(*ARGS, f"--hwopt-json={out}")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*warnings summary*",
        "test_it.py::test_inconclusive",
        "*test_it.py:1: InconclusiveWarning: speedup of fast vs slow: inconclusive (*",
    ])
    result.stdout.fnmatch_lines([
        "*hwopt summary*",
        "test_it.py::test_inconclusive*speedup vs slow*fast*inconclusive (*)*",
        "*1 inconclusive, 1 passed; inconclusive checks warned (InconclusiveWarning) and did "
        "not fail tests: --hwopt-strict fails them",
    ])
    checks = json.loads(out.read_text())["checks"]
    planted_checks = [c for c in checks if c["message"].startswith("speedup of fast vs slow")]
    assert [c["status"] for c in planted_checks] == ["inconclusive", "passed"]
    if "reason" in Check.__dataclass_fields__:
        assert planted_checks[0]["reason"] == BUSY
        result.stdout.fnmatch_lines([f"*inconclusive ({BUSY})*"])


@pytest.mark.parametrize("how", [("-W", "error::pytest_hwopt.InconclusiveWarning"),
                                 ("-o", "filterwarnings=error::pytest_hwopt.InconclusiveWarning")])
def test_warnings_filter_turns_inconclusive_into_a_failure(planted, how):
    result = planted.runpytest(*ARGS, *how)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_inconclusive _*",
        "speedup of fast vs slow: inconclusive (*",
        "(InconclusiveWarning turned into an error by a warnings filter)",
    ])
    # a readable failure: the messages, no traceback through the plugin
    assert "verdict.py" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("how", [("--hwopt-strict",), ("-o", "hwopt_strict=true")])
def test_strict_fails_inconclusive(planted, how):
    result = planted.runpytest(*ARGS, *how)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ test_inconclusive _*", "speedup of fast vs slow: inconclusive"])
    assert "InconclusiveWarning" not in result.stdout.str()
    assert "did not fail tests" not in result.stdout.str()


def test_report_only_fails_nothing_and_warns_nothing(planted):
    planted.makepyfile(test_it=TESTS + MISSED)
    result = planted.runpytest(*ARGS, "--hwopt-report-only", "--hwopt-strict")
    result.assert_outcomes(passed=3)
    assert "InconclusiveWarning" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*report only: budgets did not fail tests*"])


def test_clear_miss_fails_and_inconclusive_beside_it_still_warns(planted):
    planted.makepyfile(test_it=TESTS + MISSED)
    result = planted.runpytest(*ARGS)
    result.assert_outcomes(passed=2, failed=1, warnings=2)
    result.stdout.fnmatch_lines(["*_ test_missed _*", "speedup of fast vs slow: failed"])
    result.stdout.fnmatch_lines(["test_it.py::test_missed",
                                 "*InconclusiveWarning: speedup of fast vs slow: inconclusive*"])
