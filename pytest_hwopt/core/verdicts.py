"""Verdicts: budget specs + measurements -> checks that pass, fail or stay inconclusive.

Pure: no pytest, no torch. A check passes when its whole confidence interval
meets the budget and fails when the whole interval misses it; in between it is
``inconclusive`` and the engine measures more. When time runs out the point
estimate decides, and the check keeps the ``inconclusive`` label.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from pytest_hwopt.core import stats
from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.specs import TOLERANCES, Spec, Tolerance, resolve_budget

PASSED, FAILED, INCONCLUSIVE, SKIPPED = "passed", "failed", "inconclusive", "skipped"
REPORTED = "reported"  # measured without a budget
# budgets whose interval narrows with more rounds: the only ones adaptive sampling waits for
SAMPLED_KINDS = ("speedup", "latency", "throughput")


class RoleError(ValueError):
    """A budget whose candidate or reference variant cannot be determined."""


@dataclass
class Check:
    """The verdict on one budget of one test."""

    kind: str
    variant: str
    vs: str | None
    budget: float | None
    measured: float | None
    low: float | None
    high: float | None
    unit: str
    status: str
    message: str
    metric: str = ""
    test: str = ""
    budget_key: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the check holds; an inconclusive one counts by its point estimate."""
        if self.status == INCONCLUSIVE:
            return bool(self.detail.get("point_passed", False))
        return self.status in (PASSED, SKIPPED, REPORTED)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def assign_roles(specs: Sequence[Spec], variants: Sequence[str],
                 references: Sequence[str] = ()) -> list[tuple[Spec, str, str | None]]:
    """``(spec, candidate, reference)`` for each spec, or :class:`RoleError`.

    The candidate is ``of=``; without it, the one variant that no ``vs=`` names
    (nor ``references``, e.g. the model path's eager reference). An accuracy
    budget without ``vs`` compares with the reference, when there is exactly one.
    """
    listed = ", ".join(repr(v) for v in variants) or "none"
    refs = {s.vs for s in specs if s.vs} | set(references)
    for name in refs | {s.of for s in specs if s.of}:
        if name not in variants:
            raise RoleError(f"budget names variant {name!r}, but the test measured {listed}")
    unnamed = [v for v in variants if v not in refs]
    out = []
    for spec in specs:
        candidate = spec.of
        if candidate is None:
            if len(unnamed) != 1:
                raise RoleError(
                    f"{spec.describe()}: cannot tell which variant it applies to; measured "
                    f"{listed}; pass of=<variant>")
            candidate = unnamed[0]
        reference = spec.vs
        if spec.kind == "accuracy" and reference is None:
            if len(refs) != 1:
                raise RoleError(f"{spec.describe()}: pass vs=<variant> to compare with; "
                                f"measured {listed}")
            reference = next(iter(refs))
        if reference is not None and reference == candidate:
            raise RoleError(f"{spec.describe()}: variant {candidate!r} compared with itself")
        out.append((spec, candidate, reference))
    return out


def _decide(measured: float, low: float, high: float, budget: float, *, higher_is_better: bool
            ) -> tuple[str, bool]:
    if higher_is_better:
        point = measured >= budget
        if low >= budget:
            return PASSED, True
        if high < budget:
            return FAILED, False
    else:
        point = measured <= budget
        if high <= budget:
            return PASSED, True
        if low > budget:
            return FAILED, False
    return INCONCLUSIVE, point


def _num(value: float) -> str:
    """A budget as written: ``2.0``, ``1.5``, ``2.25``, ``0.001``."""
    if round(value, 1) == value and 0.1 <= abs(value) < 1e6:
        return f"{value:.1f}"
    return f"{value:g}"


def _interval(conf: float, low: float, high: float, fmt: str) -> str:
    return f"({conf:.0%} CI {fmt.format(low)}-{fmt.format(high)})"


def evaluate(
    spec: Spec,
    candidate: Measurement,
    reference: Measurement | None,
    device_keys: Sequence[str],
    confidence: float = 0.95,
    tolerance: Tolerance = TOLERANCES["fp32"],
) -> list[Check]:
    """All checks of one spec (a latency marker may hold several percentiles)."""
    checks = []
    for param, raw in spec.values.items():
        if spec.kind == "accuracy":
            continue
        budget, key = resolve_budget(raw, device_keys)
        if budget is None:
            checks.append(Check(spec.kind, candidate.name, spec.vs, None, None, None, None, "",
                                SKIPPED, f"{spec.kind} of {candidate.name}: no budget for "
                                f"{device_keys[-1] if device_keys else 'this device'} "
                                f"(budgets given for {', '.join(raw)})", metric=param))
            continue
        checks.append(_evaluate_one(spec, param, budget, candidate, reference, confidence))
        checks[-1].budget_key = key
    if spec.kind == "accuracy":
        checks.append(_accuracy(spec, candidate, reference, device_keys, tolerance))
    return checks


def _evaluate_one(spec: Spec, param: str, budget: float, cand: Measurement,
                  ref: Measurement | None, conf: float) -> Check:
    kind, name = spec.kind, cand.name
    if kind == "speedup":
        assert ref is not None
        ratio, low, high = stats.ratio_of_medians(ref.rounds_ms, cand.rounds_ms, conf)
        status, point = _decide(ratio, low, high, budget, higher_is_better=True)
        rel = ">=" if point else "<"
        msg = (f"speedup of {name} vs {ref.name}: {ratio:.2f}x "
               f"{_interval(conf, low, high, '{:.2f}')} {rel} {_num(budget)}x")
        return _check(spec, name, budget, ratio, low, high, "x", status, point, msg, param)
    if kind == "latency":
        if param == "mean_ms":
            value = cand.mean_ms
            sd = math.sqrt(sum((s - value) ** 2 for s in cand.samples_ms)
                           / max(1, len(cand.samples_ms) - 1))
            half = stats.z_value(conf) * sd / math.sqrt(len(cand.samples_ms))
            low, high = value - half, value + half
        else:
            q = float(param[1:3])
            value = stats.percentile(cand.samples_ms, q)
            low, high = stats.percentile_interval(cand.samples_ms, q, conf)
        status, point = _decide(value, low, high, budget, higher_is_better=False)
        label = "mean" if param == "mean_ms" else param[:3]
        rel = "<=" if point else ">"
        msg = (f"{label} latency of {name}: {value:.3g} ms "
               f"{_interval(conf, low, high, '{:.3g}')} {rel} {_num(budget)} ms")
        return _check(spec, name, budget, value, low, high, "ms", status, point, msg, param)
    if kind == "throughput":
        value = cand.throughput
        lo_ms, hi_ms = stats.percentile_interval(cand.samples_ms, 50, conf)
        low, high = cand.items * 1000.0 / hi_ms, cand.items * 1000.0 / lo_ms
        status, point = _decide(value, low, high, budget, higher_is_better=True)
        rel = ">=" if point else "<"
        msg = (f"throughput of {name}: {value:.4g} items/s "
               f"{_interval(conf, low, high, '{:.4g}')} {rel} {_num(budget)} items/s")
        return _check(spec, name, budget, value, low, high, "items/s", status, point, msg, param)
    single = {
        "memory": (cand.peak_memory_mb, "MB", "peak memory", False, "not measured here"),
        "cold_start": (_cold_start_s(cand), "s", "cold start", False, "not measured"),
        "energy": (cand.extra.get("energy_mj_per_call"), "mJ", "energy per call", False,
                   "needs NVML energy counters (an NVIDIA GPU)"),
        "roofline": (cand.extra.get("roofline_fraction"), "", "roofline fraction", True,
                     "declare bytes= or flops= in measure() and have a device peak"),
    }
    value, unit, label, higher, missing = single[kind]
    if value is None:
        return Check(kind, name, spec.vs, budget, None, None, None, unit, SKIPPED,
                     f"{label} of {name}: {missing}", metric=param)
    point = value >= budget if higher else value <= budget
    rel = (">=" if point else "<") if higher else ("<=" if point else ">")
    msg = f"{label} of {name}: {value:.4g} {unit} {rel} {_num(budget)} {unit}".replace("  ", " ")
    msg = msg.rstrip()
    return _check(spec, name, budget, value, value, value, unit, PASSED if point else FAILED,
                  point, msg, param)


def _cold_start_s(m: Measurement) -> float | None:
    if m.first_call_ms is None:
        return None
    return (m.prepare_s or 0.0) + m.first_call_ms / 1000.0


def _check(spec: Spec, name: str, budget: float, value: float, low: float, high: float,
           unit: str, status: str, point: bool, msg: str, param: str) -> Check:
    if status == INCONCLUSIVE:
        msg += " (inconclusive: interval straddles the budget)"
    return Check(spec.kind, name, spec.vs, budget, value, low, high, unit, status, msg,
                 metric=param, detail={"point_passed": point})


def _accuracy(spec: Spec, cand: Measurement, ref: Measurement | None,
              device_keys: Sequence[str], tolerance: Tolerance) -> Check:
    assert ref is not None
    tol = tolerance_of(spec, device_keys, tolerance)
    return accuracy_check(cand.name, ref.name, [
        ("", cand.output, ref.output), (" after timing", cand.output_after, ref.output)],
        tol.atol, tol.rtol, spec.vs, tol.rel_l2)


def tolerance_of(spec: Spec, device_keys: Sequence[str],
                 default: Tolerance = TOLERANCES["fp32"]) -> Tolerance:
    """The tolerance of an accuracy spec; what it leaves out comes from ``default``.

    Giving ``atol`` or ``rtol`` means element-wise comparison; ``rel_l2`` the norm.
    """
    default = Tolerance(*default)
    atol, rtol, rel_l2 = default
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


def accuracy_check(name: str, ref_name: str, pairs: Sequence[tuple[str, Any, Any]],
                   atol: float, rtol: float, vs: str | None = None,
                   rel_l2: float | None = None) -> Check:
    """One accuracy check over several (label, candidate output, reference output) pairs."""
    from pytest_hwopt.core import outputs  # NumPy, only when outputs are compared

    worst: Any = None
    for label, cand_out, ref_out in pairs:
        try:
            diff = outputs.compare(cand_out, ref_out, atol, rtol, rel_l2)
        except outputs.OutputMismatch as exc:
            return Check("accuracy", name, vs or ref_name, atol, None, None, None, "", FAILED,
                         f"outputs of {name}{label} do not match {ref_name}: {exc}",
                         metric="max_abs_error")
        if not diff.ok:
            msg = f"outputs of {name}{label} differ from {ref_name}: {diff.describe()}"
            return _accuracy_result(name, vs or ref_name, diff, FAILED, msg)
        if worst is None or diff.max_abs > worst.max_abs:
            worst = diff
    assert worst is not None
    msg = f"outputs of {name} match {ref_name}: {worst.describe()}"
    return _accuracy_result(name, vs or ref_name, worst, PASSED, msg)


def _accuracy_result(name: str, vs: str, diff: Any, status: str, msg: str) -> Check:
    """The check for the deciding criterion: max abs error vs atol, or relative L2 error."""
    if diff.max_rel_l2 is not None:
        budget, measured, metric = diff.max_rel_l2, diff.rel_l2, "rel_l2_error"
    else:
        budget, measured, metric = diff.atol, diff.max_abs, "max_abs_error"
    return Check("accuracy", name, vs, budget, measured, measured, measured, "", status, msg,
                 metric=metric, detail=_diff_detail(diff))


def _diff_detail(diff: Any) -> dict[str, Any]:
    return {"max_abs_error": diff.max_abs, "max_rel_error": diff.max_rel,
            "rel_l2_error": diff.rel_l2, "where": diff.where,
            "mismatched": diff.mismatched, "elements": diff.total, "atol": diff.atol,
            "rtol": diff.rtol}


def gate_on_accuracy(checks: list[Check]) -> None:
    """A speedup of a variant whose outputs are wrong never counts."""
    wrong = {(c.variant, c.vs) for c in checks if c.kind == "accuracy" and c.status == FAILED}
    wrong_variants = {v for v, _ in wrong}
    for check in checks:
        if check.kind in ("speedup", "latency", "throughput") and check.variant in wrong_variants \
                and check.status != SKIPPED:
            check.status = FAILED
            check.detail["point_passed"] = False
            check.message += f" -- not counted: outputs of {check.variant} are wrong"


def reported_speedups(measurements: Mapping[str, Measurement], references: Sequence[str],
                      checks: Sequence[Check], confidence: float = 0.95) -> list[Check]:
    """Speedup of each candidate over each reference that no budget covers, for the report."""
    covered = {(c.variant, c.vs) for c in checks if c.kind == "speedup"}
    out = []
    for ref in references:
        if ref not in measurements:
            continue
        for name, m in measurements.items():
            if name in references or (name, ref) in covered:
                continue
            ratio, low, high = stats.ratio_of_medians(measurements[ref].rounds_ms, m.rounds_ms,
                                                      confidence)
            out.append(Check("speedup", name, ref, None, ratio, low, high, "x", REPORTED,
                             f"speedup of {name} vs {ref}: {ratio:.2f}x "
                             f"{_interval(confidence, low, high, '{:.2f}')} (no budget)",
                             metric="min"))
    return out


def undecided(checks: Sequence[Check]) -> bool:
    """Whether any check still needs more rounds."""
    return any(c.status == INCONCLUSIVE for c in checks)


def evaluate_all(
    specs: Sequence[Spec],
    measurements: Mapping[str, Measurement],
    device_keys: Sequence[str],
    confidence: float = 0.95,
    tolerances: Mapping[str, Tolerance] | None = None,
    references: Sequence[str] = (),
) -> list[Check]:
    """Every check of a test, speedups gated on accuracy. Raises :class:`RoleError`.

    ``tolerances`` gives a variant's default (atol, rtol), e.g. by its precision;
    ``references`` names variants that are references without a ``vs=``.
    """
    checks: list[Check] = []
    for spec, cand, ref in assign_roles(specs, list(measurements), references):
        tol = (tolerances or {}).get(cand, TOLERANCES["fp32"])
        checks.extend(evaluate(spec, measurements[cand], measurements.get(ref) if ref else None,
                               device_keys, confidence, tol))
    gate_on_accuracy(checks)
    return checks
