"""What a verdict was worth: right, wrong, inconclusive, or no verdict at all.

A verdict is *wrong* when it is a pass or a fail contrary to the truth (a pass
of a budget above the true ratio, a fail of one below it). An
``inconclusive`` check (JSON ``status``) is neither right nor wrong: the tool
said it could not tell, whatever its point estimate and whatever the exit code
(an inconclusive check fails its test only under ``--hwopt-strict``, so the
exit code cannot tell it apart). A run that left no usable result is an
``error``.
"""

from __future__ import annotations

from typing import Final

from benchmarks.verdicts.records import Outcome, RunRecord

OUTCOMES: Final[tuple[Outcome, ...]] = ("right", "wrong", "inconclusive", "error")


def expected_pass(budget: float, truth: float) -> bool:
    """The right verdict of a ``min=budget`` speedup claim on a pair whose true ratio is ``truth``.

    ``True`` (pass) when ``budget < truth``. A budget equal to the truth has
    no right verdict; the benchmark's budgets lie a margin either side of it,
    so this raises ``ValueError`` for it.
    """
    if budget == truth:
        raise ValueError(f"a budget equal to the true ratio ({truth}) has no right verdict")
    return budget < truth


def budgets_around(truth: float, margin: float) -> tuple[float, float]:
    """The two budgets ``truth * (1 - margin)`` (right verdict: pass) and ``truth * (1 + margin)``
    (fail), rounded to 3 significant digits.

    ``margin`` is a fraction (0.15: 15% either side). Raises ``ValueError``
    unless ``truth > 0`` and ``0 < margin < 1``, or if rounding leaves a budget
    on the truth.
    """
    if not truth > 0 or not 0 < margin < 1:
        raise ValueError(f"need truth > 0 and 0 < margin < 1, got truth={truth}, margin={margin}")
    low, high = (float(f"{truth * f:.3g}") for f in (1 - margin, 1 + margin))
    if not low < truth < high:
        raise ValueError(f"margin {margin} is too small for truth {truth}: budgets {low}, {high}")
    return low, high


def classify(status: str | None, passed: bool | None, expected: bool) -> Outcome:
    """The outcome of one verdict from the check's JSON ``status`` and ``passed``.

    ``status``: the check's ``status`` (``None`` for a tool without one, e.g.
    pytest-benchmark plus a ratio of medians: its verdict is ``passed``);
    ``expected``: the right verdict (``True``: pass). ``"inconclusive"`` is
    its own outcome; ``"passed"``/``"failed"`` (or ``passed`` without a
    status) are right or wrong; anything else (``skipped``, ``reported``, no
    verdict) is an ``error``.
    """
    if status == "inconclusive":
        return "inconclusive"
    if status is None:
        if passed is None:
            return "error"
        decided = passed
    elif status in ("passed", "failed"):
        decided = status == "passed"
    else:
        return "error"
    return "right" if decided == expected else "wrong"


def outcome_of(rec: RunRecord) -> Outcome:
    """The outcome of a record: its ``outcome`` key, or derived for records written before it.

    Older records have ``right`` and (pytest-hwopt) ``status``; there an
    inconclusive check was decided on its point estimate, and it counts as
    inconclusive here too.
    """
    if "outcome" in rec:
        return rec["outcome"]
    if "error" in rec:
        return "error"
    if rec.get("status") == "inconclusive":
        return "inconclusive"
    return "right" if rec.get("right") else "wrong"
