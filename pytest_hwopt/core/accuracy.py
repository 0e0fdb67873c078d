"""Accuracy budgets: tolerances and the check that candidate outputs match a reference.

Pure: no pytest, no torch; NumPy is loaded only when outputs are compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from pytest_hwopt.core.checks import FAILED, PASSED, Check, Status
from pytest_hwopt.core.devicekeys import resolve_budget

if TYPE_CHECKING:
    from pytest_hwopt.core.outputs import OutputDiff
    from pytest_hwopt.core.specs import Spec


class Tolerance(NamedTuple):
    """Element-wise ``|c - r| <= atol + rtol * |r|``; with ``rel_l2``, a norm criterion
    ``||c - r|| <= rel_l2 * ||r||`` decides instead (int8 errors scale with the range)."""

    atol: float
    rtol: float
    rel_l2: float | None = None


# defaults by precision; bf16 keeps 8 mantissa bits; int8 is judged on the relative L2
# error (5%: a signal-to-quantisation-noise ratio of 26 dB)
TOLERANCES: Final[dict[str, Tolerance]] = {
    "fp32": Tolerance(1e-4, 1e-4),
    "fp16": Tolerance(1e-2, 1e-2),
    "bf16": Tolerance(2e-2, 2e-2),
    "int8": Tolerance(1e-1, 1e-1, rel_l2=0.05),
}

#: one compared pair: (label in the message, candidate output, reference output); outputs
#: are whatever the variants return (arrays, tensors, numbers, nested containers of them)
OutputPair = tuple[str, Any, Any]


def tolerance_of(spec: Spec, device_keys: Sequence[str],
                 default: Tolerance | tuple[float, float] = TOLERANCES["fp32"]) -> Tolerance:
    """The tolerance of an accuracy spec; what it leaves out comes from ``default``.

    Giving ``atol`` or ``rtol`` means element-wise comparison; ``rel_l2`` the norm.
    """
    atol, rtol, rel_l2 = Tolerance(*default)
    if "atol" in spec.values or "rtol" in spec.values:
        rel_l2 = None
    if "rel_l2" in spec.values:
        found = resolve_budget(spec.values["rel_l2"], device_keys)[0]
        rel_l2 = rel_l2 if found is None else found
    if "atol" in spec.values:
        found = resolve_budget(spec.values["atol"], device_keys)[0]
        atol = atol if found is None else found  # no entry for this device: the default
    if "rtol" in spec.values:
        found = resolve_budget(spec.values["rtol"], device_keys)[0]
        rtol = rtol if found is None else found
    return Tolerance(atol, rtol, rel_l2)


def accuracy_check(name: str, ref_name: str, pairs: Sequence[OutputPair],
                   atol: float, rtol: float, vs: str | None = None,
                   rel_l2: float | None = None) -> Check:
    """One accuracy check over several (label, candidate output, reference output) pairs.

    Fails on the first pair that differs (or cannot be compared); passes with the
    worst pair's figures otherwise.
    """
    from pytest_hwopt.core import outputs  # NumPy, only when outputs are compared

    worst: OutputDiff | None = None
    for label, cand_out, ref_out in pairs:
        try:
            diff = outputs.compare(cand_out, ref_out, atol, rtol, rel_l2)
        except outputs.OutputMismatch as exc:
            return Check(kind="accuracy", variant=name, vs=vs or ref_name, budget=atol,
                         status=FAILED, metric="max_abs_error",
                         message=f"outputs of {name}{label} do not match {ref_name}: {exc}")
        if not diff.ok:
            msg = f"outputs of {name}{label} differ from {ref_name}: {diff.describe()}"
            return _accuracy_result(name, vs or ref_name, diff, FAILED, msg)
        if worst is None or diff.max_abs > worst.max_abs:
            worst = diff
    if worst is None:
        raise ValueError(f"accuracy of {name}: no outputs to compare")
    msg = f"outputs of {name} match {ref_name}: {worst.describe()}"
    return _accuracy_result(name, vs or ref_name, worst, PASSED, msg)


def _accuracy_result(name: str, vs: str, diff: OutputDiff, status: Status, msg: str) -> Check:
    """The check for the deciding criterion: max abs error vs atol, or relative L2 error."""
    if diff.max_rel_l2 is not None:
        budget, measured, metric = diff.max_rel_l2, diff.rel_l2, "rel_l2_error"
    else:
        budget, measured, metric = diff.atol, diff.max_abs, "max_abs_error"
    return Check(kind="accuracy", variant=name, vs=vs, budget=budget, measured=measured,
                 low=measured, high=measured, status=status, message=msg, metric=metric,
                 detail={"max_abs_error": diff.max_abs, "max_rel_error": diff.max_rel,
                         "rel_l2_error": diff.rel_l2, "where": diff.where,
                         "mismatched": diff.mismatched, "elements": diff.total,
                         "atol": diff.atol, "rtol": diff.rtol})
