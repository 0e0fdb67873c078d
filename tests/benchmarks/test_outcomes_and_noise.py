"""The benchmarks' outcome classification, budgets around a truth, and noise commands.

Nothing here starts a process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the repository root is not on sys.path under every runner
    sys.path.insert(0, str(ROOT))

from benchmarks.verdicts import noise  # noqa: E402
from benchmarks.verdicts.outcomes import (  # noqa: E402
    budgets_around,
    classify,
    expected_pass,
    outcome_of,
)
from benchmarks.verdicts.records import RunRecord  # noqa: E402
from benchmarks.verdicts.workload import render_model_test  # noqa: E402


@pytest.mark.parametrize(("status", "passed", "expected", "outcome"), [
    ("passed", True, True, "right"),
    ("failed", False, False, "right"),
    ("passed", True, False, "wrong"),    # a false pass
    ("failed", False, True, "wrong"),    # a false fail
    ("inconclusive", True, False, "inconclusive"),  # whatever the point estimate said
    ("inconclusive", False, False, "inconclusive"),
    ("skipped", False, True, "error"),
    ("reported", True, True, "error"),
    (None, True, True, "right"),         # a tool without a status: its verdict is `passed`
    (None, True, False, "wrong"),
    (None, None, True, "error"),
])
def test_classify(status: str | None, passed: bool | None, expected: bool, outcome: str) -> None:
    assert classify(status, passed, expected) == outcome


def test_classify_goes_by_status_over_passed() -> None:
    # the status decides: a `passed` flag that disagrees with it does not turn a fail right
    assert classify("failed", True, True) == "wrong"


def test_expected_pass() -> None:
    assert expected_pass(2.55, 3.0) is True and expected_pass(3.45, 3.0) is False
    with pytest.raises(ValueError, match="no right verdict"):
        expected_pass(3.0, 3.0)


def test_budgets_around() -> None:
    assert budgets_around(3.0, 0.15) == (2.55, 3.45)
    assert budgets_around(1.663, 0.15) == (1.41, 1.91)
    for bad in ((0.0, 0.15), (-1.0, 0.15), (3.0, 0.0), (3.0, 1.0)):
        with pytest.raises(ValueError, match="need truth > 0"):
            budgets_around(*bad)
    with pytest.raises(ValueError, match="too small"):
        budgets_around(1.0, 1e-5)  # rounding to 3 digits lands on the truth


def test_outcome_of_old_and_new_records() -> None:
    base: RunRecord = {"tool": "hwopt", "budget": 3.45, "wall_s": 1.0}
    assert outcome_of({**base, "outcome": "wrong"}) == "wrong"
    # written before `outcome`: derived from error, status and right
    assert outcome_of({**base, "error": "timed out", "right": False}) == "error"
    assert outcome_of({**base, "status": "inconclusive", "right": True}) == "inconclusive"
    assert outcome_of({**base, "status": "failed", "right": True}) == "right"
    assert outcome_of({**base, "status": "passed", "right": False}) == "wrong"


def test_noise_kinds_and_aliases() -> None:
    assert noise.NOISES == ("quiet", "steady", "bursty", "crowded")
    assert noise.canonical("busy") == "steady" and noise.canonical("flapping") == "bursty"
    assert noise.canonical("crowded") == "crowded"
    with pytest.raises(ValueError, match="unknown noise 'loud'; known: quiet, steady"):
        noise.canonical("loud")


def test_noise_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(noise, "usable_cores", lambda: [0, 1])
    assert noise.Noise("quiet", 1)._commands() == []
    (steady,) = noise.Noise("busy", 1)._commands()  # the earlier name still works
    assert steady[-3:] == ["busy", steady[-2], "0"]
    crowded = noise.Noise("crowded", 1)._commands()
    assert [c[-1] for c in crowded] == ["0", "1"]  # one spinner pinned to each usable core
    assert all(c[-3] == "busy" for c in crowded)
    bursty = noise.Noise("bursty", 7)._commands()
    assert len(bursty) == noise.FLAPPING_WORKERS and all(c[-5] == "flap" for c in bursty)
    assert {c[-2] for c in bursty} == {"7"}
    with pytest.raises(ValueError, match="unknown noise"):
        noise.Noise("loud", 1)._commands()


def test_model_test_files_compile() -> None:
    hwopt = render_model_test("hwopt", budget=1.41)
    assert '@hwopt.speedup(min=1.41, vs="pytorch")' in hwopt
    assert 'backend="onnxruntime"' in hwopt and "torch.randn(32, 64)" in hwopt
    pb = render_model_test("pytest-benchmark", threads=2)
    assert "THREADS = 2" in pb and "allow_spinning" in pb
    for source in (hwopt, pb):
        compile(source, "test_pair.py", "exec")
    with pytest.raises(ValueError, match="needs a budget"):
        render_model_test("hwopt")
    with pytest.raises(ValueError, match="no model test"):
        render_model_test("timeit", budget=1.0)
