"""What a test's checks do to the test: a clear miss fails it, an inconclusive check warns.

Pure: no pytest, no torch. An inconclusive check (its interval still straddles the budget
at the time limit, or the machine was too busy to measure cleanly) is neither a pass nor a
fail: it is issued as :class:`InconclusiveWarning`, so it stands in pytest's warnings
summary, and the usual warnings filters decide what it does
(``-W error::pytest_hwopt.InconclusiveWarning`` turns it into a failure, ``ignore::...``
silences it). ``--hwopt-strict`` fails it outright.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from pytest_hwopt.core.checks import INCONCLUSIVE, Check

__all__ = ["InconclusiveWarning", "Outcome", "inconclusive_text", "outcome", "reason_of",
           "undecided_because", "warn_inconclusive"]

#: how the reason of a check the machine was too busy to decide begins
BUSY: str = "machine busy"

#: the reason of an inconclusive check that names none (the interval straddled the budget)
STRADDLES: str = "interval straddles the budget"


class InconclusiveWarning(UserWarning):
    """A budget check that the measurement could not decide either way.

    Issued once per inconclusive check, attributed to its test. Exported as
    ``pytest_hwopt.InconclusiveWarning``: ``-W error::pytest_hwopt.InconclusiveWarning``
    (or ``filterwarnings = error::pytest_hwopt.InconclusiveWarning``) fails such tests.
    """


@dataclass(frozen=True)
class Outcome:
    """A test's checks sorted by what they do to it.

    ``failing`` fail the test (wrong outputs first: they explain why a speedup did not
    count); ``warned`` are inconclusive checks to issue as :class:`InconclusiveWarning`.
    """

    failing: tuple[Check, ...]
    warned: tuple[Check, ...]


def outcome(checks: Iterable[Check], *, strict: bool = False, report_only: bool = False
            ) -> Outcome:
    """Which checks fail the test and which warn.

    A failed check fails it; an inconclusive one warns, or fails with ``strict``; with
    ``report_only`` nothing fails and nothing warns (the report still shows every status).
    """
    if report_only:
        return Outcome((), ())
    checks = list(checks)
    inconclusive = [c for c in checks if c.status is INCONCLUSIVE]
    failing = [c for c in checks if c.status is not INCONCLUSIVE and not c.passed]
    if strict:
        failing += inconclusive
        inconclusive = []
    failing.sort(key=lambda c: c.kind != "accuracy")  # stable: otherwise in check order
    return Outcome(tuple(failing), tuple(inconclusive))


def reason_of(check: Check) -> str:
    """Why ``check`` is inconclusive: its own ``reason`` when it gives one, else that the
    interval straddles the budget; ``""`` for a check that is not inconclusive and gives none."""
    reason = str(getattr(check, "reason", "") or "")
    if reason or check.status is not INCONCLUSIVE:
        return reason
    return STRADDLES


def inconclusive_text(check: Check) -> str:
    """The warning's text: the check's message, with its reason when the message lacks it."""
    reason = reason_of(check)
    if reason and reason not in check.message:
        return f"{check.message} (inconclusive: {reason})"
    return check.message


def warn_inconclusive(checks: Sequence[Check], filename: str, lineno: int) -> list[str]:
    """Issue one :class:`InconclusiveWarning` per check, attributed to ``filename:lineno``
    (the test's definition, 1-based), so a warnings summary points at the test.

    Returns the texts of the warnings a filter turned into errors (``-W error::...``): the
    caller fails the test with them. Every check is issued, even after one raised.
    """
    escalated: list[str] = []
    for check in checks:
        text = inconclusive_text(check)
        try:
            warnings.warn_explicit(text, InconclusiveWarning, filename, lineno)
        except InconclusiveWarning:
            escalated.append(text)
    return escalated


def undecided_because(checks: Iterable[Check], reason: str, kinds: Collection[str]
                      ) -> list[Check]:
    """``checks`` with every passed or failed check of ``kinds`` made inconclusive for
    ``reason`` (e.g. the machine was too busy for the whole run to stand for a quiet one);
    the other checks as they are. The measured figure and interval are kept."""
    out = []
    for c in checks:
        if c.kind in kinds and c.status is not INCONCLUSIVE and c.status.value in (
                "passed", "failed"):
            c = dataclasses.replace(c, status=INCONCLUSIVE, reason=reason,
                                    point_passed=c.status.value == "passed",
                                    message=f"{c.message} (inconclusive: {reason})")
        out.append(c)
    return out
