"""Verdicts: budget specs + measurements -> checks that pass, fail or stay inconclusive.

Pure: no pytest, no torch. A check passes when its whole confidence interval
meets the budget and fails when the whole interval misses it; in between it is
``inconclusive`` and the engine measures more. When time runs out the point
estimate decides, and the check keeps the ``inconclusive`` label. How each kind
is judged is its registry entry's evaluator (:mod:`.kinds`).

Timed figures are read from undisturbed samples only (:mod:`.measurement`); a variant
whose samples were mostly disturbed gives ``inconclusive`` checks with the reason
("machine busy: ..."), never a pass or a fail. Every inconclusive check says why in
``Check.reason``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Final

from pytest_hwopt.core import kinds, stats
from pytest_hwopt.core.accuracy import TOLERANCES, Tolerance, accuracy_check, tolerance_of
from pytest_hwopt.core.checks import (
    FAILED,
    INCONCLUSIVE,
    PASSED,
    REPORTED,
    SKIPPED,
    Check,
    Status,
)
from pytest_hwopt.core.generation import (
    METRICS,
    GenerationMeasurement,
    same_prompt,
    token_difference,
)
from pytest_hwopt.core.measurement import Measurement, clean_round_pairs
from pytest_hwopt.core.metric_names import THROUGHPUT
from pytest_hwopt.core.served import LoadGenMeasurement, ServeMeasurement, is_load
from pytest_hwopt.core.specs import Spec

__all__ = ["FAILED", "INCONCLUSIVE", "PASSED", "REPORTED", "SAMPLED_KINDS", "SKIPPED", "Check",
           "RoleError", "Status", "accuracy_check", "assign_roles", "evaluate", "evaluate_all",
           "gate_on_accuracy", "own_references", "reference_aliases", "reported_speedups",
           "tolerance_of", "undecided"]

#: budgets whose interval narrows with more rounds: the only ones adaptive sampling waits
#: for; follows the registry
SAMPLED_KINDS: Final[Sequence[str]] = kinds.KindNames(lambda kind: kind.sampled)


class RoleError(ValueError):
    """A budget whose candidate or reference variant cannot be determined."""


def assign_roles(specs: Sequence[Spec], variants: Sequence[str],
                 references: Sequence[str] = (), own: Mapping[str, str] | None = None,
                 aliases: Mapping[str, Sequence[str]] | None = None
                 ) -> list[tuple[Spec, str, str | None]]:
    """``(spec, candidate, reference)`` for each spec, or :class:`RoleError`.

    The candidate is ``of=``; without it, the one variant that no ``vs=`` names
    (nor ``references``, e.g. the model path's eager reference). A kind that
    compares with a reference by default (accuracy) and has no ``vs`` compares with
    the candidate's own reference (``own``: candidate -> reference), else with the
    reference when there is exactly one. ``aliases`` maps a name that stands for several
    references (``pytorch`` when a test prepared several modules or inputs) to them: such a
    ``vs`` means the candidate's own reference, and is an error listing the references
    when the candidate has none of them.
    """
    own, aliases = own or {}, aliases or {}
    listed = ", ".join(repr(v) for v in variants) or "none"
    aliased = {s.vs for s in specs
               if s.vs is not None and s.vs in aliases and s.vs not in variants}
    refs = {s.vs for s in specs if s.vs and s.vs not in aliased} | set(references)
    for name in refs | {s.of for s in specs if s.of}:
        if name not in variants:
            raise RoleError(f"budget names variant {name!r}, but the test measured {listed}")
    unnamed = [v for v in variants if v not in refs]
    out = []
    for spec in specs:
        candidate = spec.of
        if candidate is None:
            if len(unnamed) != 1:
                if spec.vs is not None and spec.vs in aliased:
                    raise RoleError(_ambiguous(spec, aliases[spec.vs], own))
                raise RoleError(
                    f"{spec.describe()}: cannot tell which variant it applies to; measured "
                    f"{listed}; pass of=<variant>")
            candidate = unnamed[0]
        reference = spec.vs
        if reference is not None and reference in aliased:
            if own.get(candidate) not in aliases[reference]:
                raise RoleError(_ambiguous(spec, aliases[reference], own))
            reference = own[candidate]
        kind = kinds.find(spec.kind)
        if reference is None and kind is not None and kind.reference_by_default:
            if candidate in own:
                reference = own[candidate]
            elif len(refs) != 1:
                raise RoleError(f"{spec.describe()}: pass vs=<variant> to compare with; "
                                f"measured {listed}")
            else:
                reference = next(iter(refs))
        if reference is not None and reference == candidate:
            raise RoleError(f"{spec.describe()}: variant {candidate!r} compared with itself")
        out.append((spec, candidate, reference))
    return out


def _ambiguous(spec: Spec, references: Sequence[str], own: Mapping[str, str]) -> str:
    """The error of a ``vs`` that stands for several references."""
    def of(ref: str) -> str:
        users = [c for c, r in own.items() if r == ref]
        return f"{ref!r} (of {', '.join(users)})" if users else repr(ref)

    return (f"{spec.describe()}: vs={spec.vs!r} is ambiguous: the test has "
            f"{len(references)} references, one per module and inputs: "
            f"{', '.join(of(r) for r in references)}; pass of=<candidate> to compare it "
            f"with its own, or vs=<one of them>")


def own_references(measurements: Mapping[str, Measurement]) -> dict[str, str]:
    """candidate -> the reference variant it was prepared against (``extra["reference"]``,
    set by the model path), for the candidates that have one among ``measurements``."""
    out: dict[str, str] = {}
    for name, m in measurements.items():
        ref = m.extra.get("reference")
        if isinstance(ref, str) and ref in measurements and ref != name:
            out[name] = ref
    return out


def reference_aliases(measurements: Mapping[str, Measurement], references: Sequence[str]
                      ) -> dict[str, list[str]]:
    """A backend name that several references share (``pytorch``) -> those references,
    when no variant has that name itself."""
    by_backend: dict[str, list[str]] = {}
    for ref in [name for name in measurements if name in references]:  # in measured order
        backend = measurements[ref].extra.get("backend")
        if isinstance(backend, str) and backend not in measurements:
            by_backend.setdefault(backend, []).append(ref)
    return {k: v for k, v in by_backend.items() if len(v) > 1}


def evaluate(
    spec: Spec,
    candidate: Measurement,
    reference: Measurement | None,
    device_keys: Sequence[str],
    confidence: float = 0.95,
    tolerance: Tolerance | tuple[float, float] = TOLERANCES["fp32"],
) -> list[Check]:
    """All checks of one spec (a latency marker may hold several percentiles).

    ``device_keys`` picks per-device budgets (most specific first); ``tolerance`` is
    the candidate's default for an accuracy spec.
    """
    kind = kinds.get(spec.kind)
    return kind.evaluate(kinds.Evaluation(
        kind=kind, spec=spec, candidate=candidate, reference=reference,
        device_keys=device_keys, confidence=confidence, tolerance=Tolerance(*tolerance)))


def gate_on_accuracy(checks: list[Check]) -> None:
    """A speedup of a variant whose outputs are wrong never counts (``checks`` is updated)."""
    wrong = {c.variant for c in checks if c.kind == "accuracy" and c.status is FAILED}
    for n, check in enumerate(checks):
        kind = kinds.find(check.kind)
        if kind is not None and kind.gated_by_accuracy and check.variant in wrong \
                and check.status is not SKIPPED:
            checks[n] = dataclasses.replace(
                check, status=FAILED, point_passed=False,
                message=check.message + f" -- not counted: outputs of {check.variant} are wrong")


def reported_speedups(measurements: Mapping[str, Measurement], references: Sequence[str],
                      checks: Sequence[Check], confidence: float = 0.95) -> list[Check]:
    """Speedup of each candidate over each reference that no budget covers, for the report."""
    speedup = kinds.get("speedup")
    covered = {(c.variant, c.vs) for c in checks if c.kind == speedup.name}
    own = own_references(measurements)
    out = []
    for ref in references:
        if ref not in measurements:
            continue
        for name, m in measurements.items():
            if name in references or (name, ref) in covered or own.get(name, ref) != ref:
                continue  # a candidate is compared with its own reference only
            ref_rounds, cand_rounds = clean_round_pairs(measurements[ref], m)
            if not ref_rounds:
                continue  # no round undisturbed on both sides: nothing to report
            ratio, low, high = stats.ratio_of_medians(ref_rounds, cand_rounds, confidence)
            fmt = speedup.value_format
            message = (f"{speedup.subject_of(name, ref, 'min')}: "
                       f"{speedup.with_unit(format(ratio, fmt))} "
                       f"{kinds.interval_text(confidence, low, high, fmt)} (no budget)")
            out.append(Check(kind=speedup.name, variant=name, vs=ref, measured=ratio, low=low,
                             high=high, unit=speedup.unit, status=REPORTED, message=message,
                             metric="min"))
    return out


def undecided(checks: Sequence[Check]) -> bool:
    """Whether any check still needs more rounds."""
    return any(c.status is INCONCLUSIVE for c in checks)


def evaluate_all(
    specs: Sequence[Spec],
    measurements: Mapping[str, Measurement],
    device_keys: Sequence[str],
    confidence: float = 0.95,
    tolerances: Mapping[str, Tolerance | tuple[float, float]] | None = None,
    references: Sequence[str] = (),
) -> list[Check]:
    """Every check of a test, speedups gated on accuracy. Raises :class:`RoleError`.

    ``tolerances`` gives a variant's default (atol, rtol), e.g. by its precision;
    ``references`` names variants that are references without a ``vs=``.
    """
    checks: list[Check] = []
    roles = assign_roles(specs, list(measurements), references, own_references(measurements),
                         reference_aliases(measurements, references))
    counted = {cand for spec, cand, _ in roles if spec.kind == "failures"}
    for name, m in measurements.items():  # a load run's failures always count
        if is_load(m) and name not in counted:
            roles.append((Spec("failures", {"max": 0.0}, of=name), name, None))
    for spec, cand, ref in roles:
        if ref is not None and spec.vs is not None and spec.vs != ref:
            spec = dataclasses.replace(spec, vs=ref)  # an alias resolved: name the reference
        tol = (tolerances or {}).get(cand, TOLERANCES["fp32"])
        checks.extend(evaluate(spec, measurements[cand], measurements.get(ref) if ref else None,
                               device_keys, confidence, tol))
    gate_on_accuracy(checks)
    _generation_only(checks, measurements)
    _serve_only(checks, measurements)
    gate_on_token_ids(checks, measurements)
    gate_on_loadgen(checks, measurements)
    return checks


def _generation_only(checks: Sequence[Check], measurements: Mapping[str, Measurement]
                     ) -> None:
    """:class:`RoleError` for a TTFT or TPOT figure (``hwopt.ttft``, ``hwopt.tpot``,
    ``hwopt.speedup(metric=...)``) asked of a variant that is no generation variant."""
    for check in checks:
        if check.kind not in METRICS and check.metric not in METRICS:
            continue
        for name in (check.variant, check.vs):
            m = measurements.get(name) if name is not None else None
            if m is not None and not isinstance(m, GenerationMeasurement):
                what = f"hwopt.{check.kind}" + (f"(metric={check.metric!r})"
                                                if check.kind not in METRICS else "")
                raise RoleError(f"{what}: variant {name!r} is not a generation variant: TTFT "
                                "and TPOT are measured for variants registered with "
                                "hwopt_bench.generate()")


def _serve_only(checks: Sequence[Check], measurements: Mapping[str, Measurement]) -> None:
    """:class:`RoleError` for ``hwopt.speedup(metric="throughput")`` asked of a variant that
    is no serve variant, and for TTFT or TPOT of a LoadGen variant."""
    for check in checks:
        for name in (check.variant, check.vs):
            m = measurements.get(name) if name is not None else None
            if m is None:
                continue
            if check.metric == THROUGHPUT and not isinstance(m, ServeMeasurement):
                raise RoleError(f"hwopt.speedup(metric='throughput'): variant {name!r} is not "
                                "a serve variant: a throughput speedup compares the output "
                                "throughput of load runs (hwopt_bench.serve); for other "
                                "variants leave metric out (the ratio of per-call times)")
            if isinstance(m, LoadGenMeasurement) and (check.kind in METRICS
                                                      or check.metric in METRICS):
                raise RoleError(f"hwopt.{check.kind}: variant {name!r} is a LoadGen variant: "
                                "LoadGen measures query latency, not TTFT or TPOT "
                                "(hwopt.latency applies)")


def gate_on_loadgen(checks: list[Check], measurements: Mapping[str, Measurement]) -> None:
    """Every check of a LoadGen variant whose run LoadGen judged INVALID (or whose system
    under test raised) fails, with LoadGen's reason (``checks`` is updated)."""
    for n, check in enumerate(checks):
        m = measurements.get(check.variant)
        if not isinstance(m, LoadGenMeasurement) or m.valid or check.kind == "failures" \
                or check.status is FAILED:
            continue
        why = m.error or f"{m.loadgen_result}: {m.invalid_reason or 'no reason given'}"
        checks[n] = dataclasses.replace(check, status=FAILED, point_passed=False,
                                        message=check.message + f" -- not counted: LoadGen "
                                        f"run {why}")


def gate_on_token_ids(checks: list[Check], measurements: Mapping[str, Measurement]) -> None:
    """A speedup between two generation variants counts only when their greedy token ids
    agree: otherwise it fails, naming the first position where they differ (``checks`` is
    updated)."""
    for n, check in enumerate(checks):
        kind = kinds.find(check.kind)
        if kind is None or not kind.gated_by_accuracy or check.vs is None \
                or check.status is SKIPPED:
            continue
        cand, ref = measurements.get(check.variant), measurements.get(check.vs)
        if not (isinstance(cand, GenerationMeasurement)
                and isinstance(ref, GenerationMeasurement)) or not same_prompt(cand, ref):
            continue  # other prompts (or batches) give other tokens: nothing to compare
        why = token_difference(cand, ref)
        if why:
            checks[n] = dataclasses.replace(
                check, status=FAILED, point_passed=False,
                message=check.message + f" -- not counted: {why}")
