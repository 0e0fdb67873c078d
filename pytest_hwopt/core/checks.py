"""The verdict on one budget: :class:`Check` and its :class:`Status`.

Pure: no pytest, no torch. ``Check.to_dict()`` is the form the JSON document,
the summary table and the HTML report read.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final


class Status(str, Enum):
    """How a check came out; the value is the string written to JSON."""

    PASSED = "passed"
    FAILED = "failed"
    #: no clear verdict, for the reason in ``Check.reason``: the interval straddles the
    #: budget (the point estimate decides ``passed``), or the machine was too busy to
    #: collect undisturbed samples (no point estimate: ``passed`` is False)
    INCONCLUSIVE = "inconclusive"
    #: no budget for this device, or the figure is not measured here
    SKIPPED = "skipped"
    #: measured without a budget (a speedup over a reference, for the report)
    REPORTED = "reported"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


PASSED: Final = Status.PASSED
FAILED: Final = Status.FAILED
INCONCLUSIVE: Final = Status.INCONCLUSIVE
SKIPPED: Final = Status.SKIPPED
REPORTED: Final = Status.REPORTED


@dataclass(frozen=True, kw_only=True)
class Check:
    """The verdict on one budget of one test.

    ``budget``, ``measured``, ``low`` and ``high`` are in ``unit`` (``"x"``, ``"ms"``,
    ``"items/s"``, ``"MB"``, ``"s"``, ``"mJ"`` or ``""``); ``low``/``high`` bound the
    interval of ``measured`` (equal for a single reading). ``point_passed`` is
    whether the point estimate meets the budget, set for checks that have one.
    ``detail`` holds kind-specific facts (an accuracy check's worst element).
    ``reason`` says why an inconclusive check is inconclusive ("interval straddles the
    budget", "machine busy: 83% of samples of naive disturbed"); empty otherwise.
    """

    kind: str
    variant: str
    status: Status
    message: str
    vs: str | None = None
    budget: float | None = None
    measured: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = ""
    metric: str = ""
    test: str = ""
    budget_key: str = ""
    point_passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):  # a plain "passed" from an older caller
            object.__setattr__(self, "status", Status(self.status))

    @property
    def passed(self) -> bool:
        """Whether the check holds; an inconclusive one counts by its point estimate (none,
        and so False, when the machine was too busy to read one)."""
        if self.status is Status.INCONCLUSIVE:
            return bool(self.point_passed)
        return self.status in (Status.PASSED, Status.SKIPPED, Status.REPORTED)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the fields (``reason`` "" when there is none), ``point_passed``
        inside ``detail``, and ``passed``."""
        detail = copy.deepcopy(self.detail)
        if self.point_passed is not None:
            detail["point_passed"] = self.point_passed
        return {
            "kind": self.kind,
            "variant": self.variant,
            "vs": self.vs,
            "budget": self.budget,
            "measured": self.measured,
            "low": self.low,
            "high": self.high,
            "unit": self.unit,
            "status": self.status.value,
            "message": self.message,
            "reason": self.reason,
            "metric": self.metric,
            "test": self.test,
            "budget_key": self.budget_key,
            "detail": detail,
            "passed": self.passed,
        }
