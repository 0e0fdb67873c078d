"""The budget kinds: one entry per kind, from which everything kind-specific is derived.

An entry (:class:`BudgetKind`) gives a kind's marker arguments (its
:class:`Signature`) and help text, its unit, which direction is better, whether
adaptive sampling waits for it, the wording of its messages and of the summary
table, and its evaluator. The marker factories (``hwopt.<kind>``), the ini marker
lines, ``specs.SIGNATURES`` / ``specs.BUDGET_KINDS``, ``verdicts.SAMPLED_KINDS``
and the summary table all read this registry, so a new kind is one
:func:`register` call with its evaluator.

Pure: no pytest, no torch.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar, overload

from pytest_hwopt.core import stats
from pytest_hwopt.core.accuracy import Tolerance, accuracy_check, tolerance_of
from pytest_hwopt.core.checks import FAILED, INCONCLUSIVE, PASSED, SKIPPED, Check, Status
from pytest_hwopt.core.devicekeys import Budget, resolve_budget
from pytest_hwopt.core.measurement import (
    MAX_DISTURBED_FRACTION,
    MIN_CLEAN,
    Measurement,
    clean_round_pairs,
)
from pytest_hwopt.core.metric_names import GENERATION_METRICS as METRICS
from pytest_hwopt.core.metric_names import THROUGHPUT

if TYPE_CHECKING:
    from pytest_hwopt.core.specs import Spec

# The measurements of generation, serve and LoadGen variants are imported where a figure
# is read, not here: this registry loads when pytest starts, they only when a test ran.

V = TypeVar("V")


@dataclass(frozen=True)
class Signature:
    """Parameters a marker accepts, in positional order."""

    params: tuple[str, ...]
    required: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these must be given
    numbers: tuple[str, ...] = ()  # budget values: positive numbers or per-device maps
    non_negative: tuple[str, ...] = ()  # tolerances: zero allowed
    names: tuple[str, ...] = ("vs", "of")  # variant names
    #: numbers that are fractions in (0, 1], with what they are a fraction of
    fractions: tuple[tuple[str, str], ...] = ()
    #: arguments that name one of a few choices (``metric="ttft"``), with the choices
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: positive numbers that set how the figure is read, not budgets (a goodput's SLOs):
    #: kept in the spec's ``options`` as text (``repr`` of the float)
    settings: tuple[str, ...] = ()

    def usage(self) -> str:
        """The parameters as the marker help writes them: ``min, vs, of=None``."""
        return ", ".join(p if p in self.required else f"{p}=None" for p in self.params)


@dataclass(frozen=True, kw_only=True)
class Figure:
    """What an evaluator read for one budget value: a point estimate in the kind's unit,
    with its interval when it has one (``low``/``high`` None: a single reading).

    A bound the samples cannot give yet is ``-inf``/``inf`` (it decides nothing), with
    ``shortfall`` saying what it needs ("an upper bound on p95 at 95% needs at least 59
    samples, 4 taken"); ``detail`` goes into the check's ``detail``.
    """

    value: float
    low: float | None = None
    high: float | None = None
    shortfall: str = ""
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Everything an evaluator may use to judge one spec of one candidate."""

    kind: BudgetKind
    spec: Spec
    candidate: Measurement
    reference: Measurement | None
    device_keys: Sequence[str]
    confidence: float
    tolerance: Tolerance

    def require_reference(self) -> Measurement:
        """The reference measurement; ValueError for a spec that names none."""
        if self.reference is None:
            raise ValueError(f"{self.spec.describe()}: needs a reference variant (vs=)")
        return self.reference


#: judges one spec: every check it gives (a latency spec may hold several percentiles)
Evaluator = Callable[[Evaluation], list[Check]]
#: the figure of one budget value (``param`` is e.g. ``"p95_ms"``), or None when the
#: figure is not measured here
FigureOf = Callable[[Evaluation, str], "Figure | None"]


@dataclass(frozen=True, kw_only=True)
class BudgetKind:
    """One kind of budget: marker ``hwopt_<name>`` and all that is particular to it."""

    name: str
    signature: Signature
    #: the marker help after ``hwopt_<name>(<params>): ``
    description: str
    evaluate: Evaluator
    #: unit of the figure and the budget: "x" (written 2.00x), "" (a bare number) or a
    #: unit written after a space ("ms", "items/s", "MB", "s", "mJ")
    unit: str = ""
    higher_is_better: bool = False
    #: its interval narrows with more rounds: adaptive sampling waits for it
    sampled: bool = False
    #: a figure of speed that does not count when the variant's outputs are wrong
    gated_by_accuracy: bool = False
    #: its figure needs timed calls: skipped when timing is off (``--hwopt-disable``);
    #: only a kind read from a single call (outputs, peak memory) sets it False
    timed: bool = True
    #: without ``vs=`` it compares with the test's one reference variant
    reference_by_default: bool = False
    #: a message's subject; ``{name}`` the candidate, ``{ref}`` the reference, ``{metric}``
    #: the budget parameter without its unit (``p95``); default "<name with spaces> of {name}"
    subject: str = ""
    #: format spec of the figure and its interval in messages
    value_format: str = ".4g"
    #: why a figure is missing (a skipped check says "<subject>: <missing>")
    missing: str = "not measured"
    #: the summary's check column; ``{vs}`` and ``{metric}``; default the name with spaces
    report_name: str = ""
    #: the summary's budget column by metric (``{budget}``), ``"*"`` for any other metric;
    #: without an entry: "<comparison> <budget in unit>"
    budget_formats: Mapping[str, str] = field(default_factory=dict)
    #: a check's metric -> the word put before its check name and subject (a speedup
    #: read from TTFT: ``TTFT speedup vs eager``)
    metric_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def marker(self) -> str:
        return f"hwopt_{self.name}"

    @property
    def marker_text(self) -> str:
        """The ini ``markers`` line: ``hwopt_speedup(min, vs, of=None): ...``."""
        return f"{self.marker}({self.signature.usage()}): {self.description}"

    @property
    def comparison(self) -> str:
        """How a passing figure compares with the budget: ``>=`` or ``<=``."""
        return comparison(self.higher_is_better)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def metric_label(self, metric: str) -> str:
        """A budget parameter without its unit: ``p95_ms`` -> ``p95``."""
        return metric.replace(f"_{self.unit}", "") if self.unit else metric

    def check_name(self, vs: str | None, metric: str) -> str:
        """The summary's check column: ``speedup vs naive``, ``latency p95``, ``cold start``."""
        template = self.report_name or self.label
        name = template.format(vs=vs, metric=self.metric_label(metric))
        return f"{self.metric_names[metric]} {name}" if metric in self.metric_names else name

    def budget_text(self, budget: float, metric: str | None) -> str | None:
        """The summary's budget column where the kind words it itself, else None."""
        template = self.budget_formats.get(metric or "", self.budget_formats.get("*"))
        return None if template is None else template.format(budget=budget)

    def subject_of(self, candidate: str, reference: str | None, metric: str) -> str:
        template = self.subject or f"{self.label} of {{name}}"
        subject = template.format(name=candidate, ref=reference or "",
                                  metric=self.metric_label(metric))
        if metric in self.metric_names:
            return f"{self.metric_names[metric]} {subject}"
        return subject

    def with_unit(self, number: str) -> str:
        """``2.00`` -> ``2.00x``, ``5`` -> ``5 ms``; a unitless figure stays bare."""
        if self.unit == "x":
            return number + "x"
        return f"{number} {self.unit}" if self.unit else number


def comparison(higher_is_better: bool) -> str:
    return ">=" if higher_is_better else "<="


# ---- the registry --------------------------------------------------------------------------

_REGISTRY: dict[str, BudgetKind] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NOT_KINDS = frozenset({"requires"})  # hwopt_requires is a marker, but not a budget


class KindError(ValueError):
    """An entry that cannot be registered; the message names the kind and the fault."""


def register(kind: BudgetKind) -> BudgetKind:
    """Add a kind (after those already registered); returns it. Raises :class:`KindError`."""
    if not _NAME.match(kind.name) or kind.name in _NOT_KINDS:
        raise KindError(f"budget kind {kind.name!r}: a name is lower-case letters, digits "
                        "and underscores, and not 'requires'")
    if kind.name in _REGISTRY:
        raise KindError(f"budget kind {kind.name!r} is already registered")
    sig = kind.signature
    mentioned = {*sig.required, *sig.one_of, *sig.numbers, *sig.non_negative,
                 *(key for key, _ in sig.fractions), *(key for key, _ in sig.choices)}
    unknown = sorted(mentioned - set(sig.params))
    if unknown:
        raise KindError(f"budget kind {kind.name!r}: {', '.join(unknown)} not among its "
                        f"parameters {', '.join(sig.params)}")
    if any(key not in sig.numbers for key, _ in sig.fractions):
        raise KindError(f"budget kind {kind.name!r}: a fraction must also be a number")
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (a plugin withdrawing its kind; a test cleaning up). KeyError if absent."""
    del _REGISTRY[name]


def find(name: str) -> BudgetKind | None:
    """The kind called ``name``, or None."""
    return _REGISTRY.get(name)


def get(name: str) -> BudgetKind:
    """The kind called ``name``; KeyError naming the known kinds otherwise."""
    kind = _REGISTRY.get(name)
    if kind is None:
        raise KeyError(f"unknown budget kind {name!r}; known: {', '.join(_REGISTRY)}")
    return kind


def all_kinds() -> tuple[BudgetKind, ...]:
    """The registered kinds, in registration order."""
    return tuple(_REGISTRY.values())


def comparison_of(kind_name: str) -> str:
    """``>=`` or ``<=`` for a check's kind; a kind that is not a budget (the baseline
    ``regression``) reads lower-is-better."""
    kind = _REGISTRY.get(kind_name)
    return comparison(kind.higher_is_better if kind else False)


def check_name(kind_name: str, vs: str | None, metric: str) -> str:
    """The summary's check column for any check, budget kind or not."""
    kind = _REGISTRY.get(kind_name)
    return kind.check_name(vs, metric) if kind else kind_name.replace("_", " ")


class KindNames(Sequence[str]):
    """Names of the registered kinds that ``keep`` accepts, read afresh on each use."""

    def __init__(self, keep: Callable[[BudgetKind], bool] = lambda kind: True) -> None:
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        return tuple(k.name for k in _REGISTRY.values() if self._keep(k))

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KindNames):
            return self._names() == other._names()
        return isinstance(other, tuple) and self._names() == other

    def __hash__(self) -> int:
        return hash(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


class KindMap(Mapping[str, V]):
    """``name -> pick(kind)`` over the registered kinds, read afresh on each use."""

    def __init__(self, pick: Callable[[BudgetKind], V]) -> None:
        self._pick = pick

    def __getitem__(self, name: str) -> V:
        return self._pick(_REGISTRY[name])

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


# ---- judging one budget value --------------------------------------------------------------

def decide(measured: float, low: float, high: float, budget: float, *,
           higher_is_better: bool) -> tuple[Status, bool]:
    """``(status, point estimate passes)``: passed or failed when the whole interval
    is on one side of the budget, inconclusive when it straddles it."""
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


def budget_number(value: float) -> str:
    """A budget as written: ``2.0``, ``1.5``, ``2.25``, ``0.001``."""
    if round(value, 1) == value and 0.1 <= abs(value) < 1e6:
        return f"{value:.1f}"
    return f"{value:g}"


def interval_text(confidence: float, low: float, high: float, fmt: str) -> str:
    """``(95% CI 2.10-2.40)`` with both bounds in format spec ``fmt``; a bound the samples
    cannot give yet reads ``?`` (``(95% CI 500-?)``)."""
    def bound(value: float) -> str:
        return format(value, fmt) if math.isfinite(value) else "?"

    return f"({confidence:.0%} CI {bound(low)}-{bound(high)})"


#: ``Check.reason`` of a check whose interval straddles its budget
STRADDLES: Final = "interval straddles the budget"
#: the start of ``Check.reason`` of a check whose samples cannot yet give the bound it needs
TOO_FEW_SAMPLES: Final = "too few samples"


def without_timing(checks: Sequence[Check], why: str) -> list[Check]:
    """``checks`` with every check of a timed kind (:attr:`BudgetKind.timed`) made
    ``skipped``, its figure dropped and ``why`` as its reason; the others as they are."""
    out = []
    for check in checks:
        kind = _REGISTRY.get(check.kind)
        if kind is None or not kind.timed or check.status is SKIPPED:
            out.append(check)
            continue
        subject = kind.subject_of(check.variant, check.vs, check.metric)
        out.append(Check(kind=check.kind, variant=check.variant, vs=check.vs,
                         budget=check.budget, unit=check.unit, status=SKIPPED,
                         metric=check.metric, budget_key=check.budget_key, reason=why,
                         message=f"{subject}: not measured ({why})"))
    return out


def busy_reason(ev: Evaluation) -> str:
    """Why a sampled kind's figure cannot be read from ``ev``'s measurements, or "".

    The machine was too busy when a variant the figure uses (the candidate, and the
    reference when there is one) has more than ``MAX_DISTURBED_FRACTION`` of its samples
    disturbed, or, for lack of the disturbed ones, fewer than ``MIN_CLEAN`` undisturbed
    samples, or, with a reference, fewer than ``MIN_CLEAN`` rounds with undisturbed samples
    of both. Too few samples without any disturbed (a short run) is no busy machine: the
    interval says so.
    """
    if not ev.kind.sampled:
        return ""
    used = [ev.candidate] + ([ev.reference] if ev.reference is not None else [])
    for m in used:
        fraction = m.disturbed_fraction
        if fraction > MAX_DISTURBED_FRACTION:
            return (f"machine busy: {fraction:.0%} of samples of {m.name} disturbed "
                    f"(at most {MAX_DISTURBED_FRACTION:.0%} allowed)")
        clean = len(m.clean_samples_ms)
        if clean < MIN_CLEAN and clean < len(m.samples_ms):
            return (f"machine busy: {clean} undisturbed sample(s) of {m.name} "
                    f"({MIN_CLEAN} needed)")
    if ev.reference is not None:
        pairs = len(clean_round_pairs(ev.reference, ev.candidate)[0])
        if pairs < MIN_CLEAN and pairs < len(ev.candidate.rounds_ms):
            return (f"machine busy: {pairs} round(s) with undisturbed samples of both "
                    f"{ev.reference.name} and {ev.candidate.name} ({MIN_CLEAN} needed)")
    return ""


def per_value(figure_of: FigureOf) -> Evaluator:
    """An evaluator that judges each budget value of a spec on its own figure.

    A value with no entry for this device, or whose figure is not measured here,
    gives a skipped check; a sampled kind whose measurements are too disturbed
    (:func:`busy_reason`) an inconclusive one without a figure; the others pass, fail or
    stay inconclusive by :func:`decide` in the kind's direction.
    """
    def evaluate(ev: Evaluation) -> list[Check]:
        return [_judge_value(ev, param, raw, figure_of) for param, raw in ev.spec.values.items()]

    return evaluate


def _judge_value(ev: Evaluation, param: str, raw: Budget, figure_of: FigureOf) -> Check:
    kind, name, vs = ev.kind, ev.candidate.name, ev.spec.vs
    budget, key = resolve_budget(raw, ev.device_keys)
    if budget is None:
        given = ", ".join(raw) if isinstance(raw, Mapping) else ""
        where = ev.device_keys[-1] if ev.device_keys else "this device"
        return Check(kind=kind.name, variant=name, vs=vs, status=SKIPPED, metric=param,
                     message=f"{kind.name} of {name}: no budget for {where} "
                             f"(budgets given for {given})")
    subject = kind.subject_of(name, ev.reference.name if ev.reference else None, param)
    busy = busy_reason(ev)
    if busy:
        bounded = _one_sided(ev, param, budget, key, subject, busy)
        if bounded is not None:
            return bounded
        # never a pass or a fail read from contended samples: no figure, no point estimate
        return Check(kind=kind.name, variant=name, vs=vs, budget=budget, unit=kind.unit,
                     status=INCONCLUSIVE, metric=param, budget_key=key, reason=busy,
                     message=f"{subject}: {kind.comparison} "
                             f"{kind.with_unit(budget_number(budget))} not judged "
                             f"(inconclusive: {busy})")
    figure = figure_of(ev, param)
    if figure is None:
        return Check(kind=kind.name, variant=name, vs=vs, budget=budget, unit=kind.unit,
                     status=SKIPPED, message=f"{subject}: {kind.missing}", metric=param,
                     budget_key=key)
    value = figure.value
    low = value if figure.low is None else figure.low
    high = value if figure.high is None else figure.high
    status, point = decide(value, low, high, budget, higher_is_better=kind.higher_is_better)
    interval = "" if figure.low is None else " " + interval_text(ev.confidence, low, high,
                                                                 kind.value_format)
    rel = kind.comparison if point else {">=": "<", "<=": ">"}[kind.comparison]
    message = (f"{subject}: {kind.with_unit(format(value, kind.value_format))}{interval} "
               f"{rel} {kind.with_unit(budget_number(budget))}")
    reason = ""
    if status is INCONCLUSIVE:
        reason = f"{TOO_FEW_SAMPLES}: {figure.shortfall}" if figure.shortfall else STRADDLES
        message += f" (inconclusive: {reason})"
    return Check(kind=kind.name, variant=name, vs=vs, budget=budget, measured=value,
                 low=low if math.isfinite(low) else None,
                 high=high if math.isfinite(high) else None, unit=kind.unit, status=status,
                 message=message, metric=param, budget_key=key, point_passed=point,
                 reason=reason, detail=dict(figure.detail))


def _one_sided(ev: Evaluation, param: str, budget: float, key: str, subject: str,
               busy: str) -> Check | None:
    """A verdict that holds although the machine was busy, or None.

    A preemption only ever adds time to a sample, so figures read from disturbed samples
    are bounds: all samples of a variant give an upper bound on its latency (a lower one
    on its throughput); a speedup over the rounds where the reference was undisturbed
    (the candidate may not be) is a lower bound on the true ratio, and over those where
    the candidate was undisturbed an upper bound. When the bound's interval clears the
    budget on the safe side, that verdict stands: a latency or throughput budget can be
    passed this way, a speedup budget passed or failed. Otherwise None (inconclusive).
    """
    kind = ev.kind
    if kind.name in METRICS or ev.spec.options.get("metric"):
        plain = _plain_views(ev)  # TTFT, TPOT: bounded as a per-call latency is
        found = None if plain is None else _one_sided(plain, param, budget, key, subject, busy)
        return None if found is None else dataclasses.replace(found, kind=kind.name)
    cand = ev.candidate
    bound: Figure | None = None
    if kind.name in ("latency", "throughput"):
        bound = _figure_of_samples(kind.name, param, cand.samples_ms, cand.items,
                                   ev.confidence, cand.calls_per_sample)
        if bound is None or bound.low is None or bound.high is None:
            return None
        safe = (bound.high <= budget) if kind.name == "latency" else (bound.low >= budget)
        if not safe:
            return None
        status, side = PASSED, "all samples, an upper bound on the time"
    elif kind.name == "speedup" and ev.reference is not None:
        ref = ev.reference
        n = len(ref.rounds_ms)
        if n != len(cand.rounds_ms):
            return None
        ref_bad = _flags(ref.rounds_disturbed, n)
        cand_bad = _flags(cand.rounds_disturbed, n)
        lower = [i for i in range(n) if not ref_bad[i]]
        upper = [i for i in range(n) if not cand_bad[i]]
        status, side = PASSED, ""
        for picks, verdict, what in ((lower, PASSED, "a lower bound"),
                                     (upper, FAILED, "an upper bound")):
            if len(picks) < MIN_CLEAN:
                continue
            ratio, low, high = stats.ratio_of_medians([ref.rounds_ms[i] for i in picks],
                                                      [cand.rounds_ms[i] for i in picks],
                                                      ev.confidence)
            if (verdict is PASSED and low >= budget) or (verdict is FAILED and high < budget):
                bound, status = Figure(value=ratio, low=low, high=high), verdict
                who = ref.name if verdict is PASSED else cand.name
                side = f"rounds with {who} undisturbed, {what} on the ratio"
                break
        if bound is None:
            return None
    else:
        return None
    assert bound.low is not None and bound.high is not None
    if not (math.isfinite(bound.low) and math.isfinite(bound.high)):
        return None  # a bound the samples cannot give yet: nothing is decided on it
    rel = kind.comparison if status is PASSED else {">=": "<", "<=": ">"}[kind.comparison]
    message = (f"{subject}: {kind.with_unit(format(bound.value, kind.value_format))} "
               f"{interval_text(ev.confidence, bound.low, bound.high, kind.value_format)} "
               f"{rel} {kind.with_unit(budget_number(budget))} (decided on {side}: {busy})")
    return Check(kind=kind.name, variant=cand.name, vs=ev.spec.vs, budget=budget,
                 measured=bound.value, low=bound.low, high=bound.high, unit=kind.unit,
                 status=status, message=message, metric=param, budget_key=key,
                 point_passed=status is PASSED,
                 detail={"one_sided": side, "machine_busy": busy})


def _plain_views(ev: Evaluation) -> Evaluation | None:
    """``ev`` with the generation figure it reads (``hwopt.ttft``, ``hwopt.tpot``,
    ``speedup(metric=)``) as plain per-call measurements (:meth:`GenerationMeasurement.view`)
    and a latency kind in place of TTFT or TPOT; None where a side is no generation
    variant or the figure is not defined."""
    from pytest_hwopt.core.generation import GenerationMeasurement
    metric = ev.kind.name if ev.kind.name in METRICS else ev.spec.options.get("metric", "")
    views: list[Measurement | None] = []
    for m in (ev.candidate, ev.reference):
        if m is None:
            views.append(None)
            continue
        if not isinstance(m, GenerationMeasurement):
            return None
        try:
            views.append(m.view(metric))
        except ValueError:
            return None
    cand, ref = views
    assert cand is not None
    return dataclasses.replace(ev, kind=get("latency") if ev.kind.name in METRICS else ev.kind,
                               candidate=cand, reference=ref,
                               spec=dataclasses.replace(ev.spec, options={}))


def _flags(flags: list[bool], n: int) -> list[bool]:
    """``flags`` cut or padded (undisturbed) to ``n`` entries."""
    return [bool(f) for f in flags[:n]] + [False] * max(0, n - len(flags))


def _figure_of_samples(kind: str, param: str, samples: list[float], items: int,
                       confidence: float, calls_per_sample: int = 1) -> Figure | None:
    """A latency percentile or a throughput figure from ``samples`` (ms per call), with
    distribution-free bounds (:func:`percentile_figure`); None for a mean (no
    distribution-free bound) or fewer than ``MIN_CLEAN`` samples."""
    if len(samples) < MIN_CLEAN or param == "mean_ms":
        return None
    if kind == "throughput":
        return rate_figure(samples, items, confidence, calls_per_sample)
    return percentile_figure(samples, float(param.removesuffix("_ms")[1:]), confidence,
                             calls_per_sample)


def percentile_figure(samples: Sequence[float], q: float, confidence: float,
                      calls_per_sample: int = 1) -> Figure:
    """The ``q``-th percentile of ``samples`` (ms) with one-sided order-statistic bounds at
    ``confidence`` on each side (:func:`stats.percentile_bounds`).

    A bound the sample count cannot give is infinite, so it decides nothing: a budget is
    neither passed nor failed on it, the engine keeps sampling, and at the time limit the
    check is inconclusive with ``shortfall`` naming the samples the bound needs
    (:func:`stats.samples_for_bound`) and about how long they take. ``detail`` records
    ``samples`` and ``samples_needed`` (for the upper bound, the one that passes a budget).
    """
    n = len(samples)
    low, high = stats.percentile_bounds(samples, q, confidence)
    needed = stats.samples_for_bound(q, confidence, upper=True)
    shortfall = ""
    if high is None or low is None:
        side = "an upper" if high is None else "a lower"
        need = needed if high is None else stats.samples_for_bound(q, confidence, upper=False)
        per_sample_ms = stats.median(samples) * calls_per_sample
        shortfall = (f"{side} bound on p{q:g} at {confidence:.0%} needs at least {need} "
                     f"samples, {n} taken (about {need * per_sample_ms / 1000:.3g} s of "
                     f"samples at {per_sample_ms:.3g} ms each: allow that time, "
                     "--hwopt-max-time)")
    return Figure(value=stats.percentile(samples, q),
                  low=-math.inf if low is None else low,
                  high=math.inf if high is None else high, shortfall=shortfall,
                  detail={"samples": n, "samples_needed": needed,
                          "interval": "one-sided order-statistic bounds"})


def rate_figure(samples: Sequence[float], items: int, confidence: float,
                calls_per_sample: int = 1) -> Figure:
    """Items per second at the median of ``samples`` (ms per call), bounded by the
    median's bounds (:func:`percentile_figure`): a slower median bounds the rate below."""
    median = percentile_figure(samples, 50.0, confidence, calls_per_sample)
    assert median.low is not None and median.high is not None

    def rate(ms: float) -> float:
        return math.inf if ms <= 0 else (0.0 if math.isinf(ms) else items * 1000.0 / ms)

    low = -math.inf if math.isinf(median.high) else rate(median.high)
    high = math.inf if math.isinf(median.low) else rate(median.low)
    return Figure(value=items * 1000.0 / stats.median(samples), low=low, high=high,
                  shortfall=median.shortfall, detail=median.detail)


# ---- the kinds -----------------------------------------------------------------------------

def _speedup(ev: Evaluation, param: str) -> Figure | None:
    from pytest_hwopt.core.generation import GenerationMeasurement
    from pytest_hwopt.core.served import is_load
    ref = ev.require_reference()
    cand = ev.candidate
    metric = ev.spec.options.get("metric")
    if metric is not None:  # a generation or serve figure: its values, rounds and flags
        if not (isinstance(cand, GenerationMeasurement)
                and isinstance(ref, GenerationMeasurement)):
            return None  # verdicts.evaluate_all names the variant of another kind
        try:
            cand, ref = cand.view(metric), ref.view(metric)
        except ValueError:
            return None  # TPOT of single-token calls: not measured
    ref_rounds, cand_rounds = clean_round_pairs(ref, cand)
    ratio, low, high = stats.ratio_of_medians(ref_rounds, cand_rounds, ev.confidence)
    shortfall = ""
    if len(ref_rounds) < MIN_CLEAN and is_load(ev.candidate):
        shortfall = (f"a ratio needs {MIN_CLEAN} load runs of each variant, "
                     f"{len(ref_rounds)} made (allow the time: --hwopt-max-time)")
    return Figure(value=ratio, low=low, high=high, shortfall=shortfall)


def _latency(ev: Evaluation, param: str) -> Figure | None:
    from pytest_hwopt.core.served import LoadGenMeasurement
    cand = ev.candidate
    if isinstance(cand, LoadGenMeasurement):  # LoadGen's own percentile, its query counts
        value = cand.percentile_ms(param)
        return None if value is None else Figure(
            value=value, detail={"source": "LoadGen summary",
                                 "queries": cand.loadgen.get("queries"),
                                 "min_queries_for": cand.loadgen.get("min_queries_for")})
    samples = ev.candidate.stat_samples_ms
    if param == "mean_ms":
        value = ev.candidate.mean_ms
        sd = math.sqrt(sum((s - value) ** 2 for s in samples) / max(1, len(samples) - 1))
        half = stats.z_value(ev.confidence) * sd / math.sqrt(len(samples))
        return Figure(value=value, low=value - half, high=value + half)
    q = float(param.removesuffix("_ms")[1:])  # p95_ms -> 95
    return percentile_figure(samples, q, ev.confidence, ev.candidate.calls_per_sample)


def _throughput(ev: Evaluation, param: str) -> Figure | None:
    from pytest_hwopt.core.served import LoadGenMeasurement, ServeMeasurement
    cand = ev.candidate
    if isinstance(cand, ServeMeasurement):  # output tokens per second of its load runs
        return Figure(value=cand.output_throughput) if cand.completed else None
    if isinstance(cand, LoadGenMeasurement):  # LoadGen's QPS
        return None if cand.qps is None else Figure(value=cand.qps)
    return rate_figure(cand.stat_samples_ms, cand.items, ev.confidence, cand.calls_per_sample)


def _single(read: Callable[[Measurement], float | None]) -> FigureOf:
    """A figure read once from the measurement, without an interval."""
    def figure(ev: Evaluation, param: str) -> Figure | None:
        value = read(ev.candidate)
        return None if value is None else Figure(value=value)

    return figure


def _cold_start_s(m: Measurement) -> float | None:
    if m.first_call_ms is None:
        return None
    return (m.prepare_s or 0.0) + m.first_call_ms / 1000.0


def _speedups(ev: Evaluation) -> list[Check]:
    """Speedup checks; with ``metric=`` ("ttft", "tpot") read from that figure of two
    generation variants, the check's ``metric`` naming it."""
    checks = per_value(_speedup)(ev)
    metric = ev.spec.options.get("metric")
    if metric is None:
        return checks
    kind = ev.kind
    out = []
    for check in checks:
        plain = kind.subject_of(check.variant, ev.reference.name if ev.reference else None,
                                check.metric)
        message = check.message
        if message.startswith(plain):
            message = kind.subject_of(check.variant, ev.reference.name if ev.reference
                                      else None, metric) + message[len(plain):]
        out.append(dataclasses.replace(check, metric=metric, message=message))
    return out


def _generation_latency(metric: str) -> FigureOf:
    """A TTFT or TPOT percentile of a generation variant, read as a per-call latency
    percentile of its per-call values (:meth:`GenerationMeasurement.view`)."""
    def figure(ev: Evaluation, param: str) -> Figure | None:
        from pytest_hwopt.core.generation import GenerationMeasurement

        cand = ev.candidate
        if not isinstance(cand, GenerationMeasurement):
            return None  # verdicts.evaluate_all names the variant that is no generation
        try:
            view = cand.view(metric)
        except ValueError:
            return None  # TPOT of single-token calls
        return _latency(dataclasses.replace(ev, candidate=view), param)

    return figure


def _accuracy(ev: Evaluation) -> list[Check]:
    from pytest_hwopt.core.generation import GenerationMeasurement, token_check
    from pytest_hwopt.core.served import is_load
    ref = ev.require_reference()
    if is_load(ev.candidate) or is_load(ref):
        return [Check(kind="accuracy", variant=ev.candidate.name, vs=ev.spec.vs,
                      status=SKIPPED, message=f"accuracy of {ev.candidate.name}: outputs of "
                      "serve and LoadGen variants are not recorded")]
    if isinstance(ev.candidate, GenerationMeasurement) \
            and isinstance(ref, GenerationMeasurement):
        return [token_check(ev.candidate, ref, ev.spec.vs)]  # token ids, exactly
    tol = tolerance_of(ev.spec, ev.device_keys, ev.tolerance)
    cand = ev.candidate
    pairs = [("", cand.output, ref.output), (" after timing", cand.output_after, ref.output)]
    return [accuracy_check(cand.name, ref.name, pairs, tol.atol, tol.rtol, ev.spec.vs,
                           tol.rel_l2)]


BUILTIN: Final = (
    BudgetKind(
        name="speedup",
        signature=Signature(("min", "vs", "of", "metric"), required=("min", "vs"),
                            numbers=("min",),
                            choices=(("metric", (*METRICS, THROUGHPUT)),)),
        description="candidate at least `min` times faster than variant `vs` (ratio of "
                    "medians, 95% CI).",
        evaluate=_speedups, unit="x", higher_is_better=True, sampled=True,
        gated_by_accuracy=True, subject="speedup of {name} vs {ref}", value_format=".2f",
        report_name="speedup vs {vs}",
        metric_names={"ttft": "TTFT", "tpot": "TPOT", THROUGHPUT: "throughput"}),
    BudgetKind(
        name="latency",
        signature=Signature(("p50_ms", "p95_ms", "p99_ms", "mean_ms", "of"),
                            one_of=("p50_ms", "p95_ms", "p99_ms", "mean_ms"),
                            numbers=("p50_ms", "p95_ms", "p99_ms", "mean_ms")),
        description="per-call latency budget in ms.",
        evaluate=per_value(_latency), unit="ms", sampled=True, gated_by_accuracy=True,
        subject="{metric} latency of {name}", value_format=".3g",
        report_name="latency {metric}"),
    BudgetKind(
        name="throughput",
        signature=Signature(("min", "of"), required=("min",), numbers=("min",)),
        description="items per second at least `min` (output tokens per second for "
                    "generation and serve variants, queries per second for LoadGen).",
        evaluate=per_value(_throughput), unit="items/s", higher_is_better=True, sampled=True,
        gated_by_accuracy=True),
    BudgetKind(
        name="memory",
        signature=Signature(("max_mb", "of"), required=("max_mb",), numbers=("max_mb",)),
        description="peak memory added while the candidate runs, at most `max_mb`.",
        evaluate=per_value(_single(lambda m: m.peak_memory_mb)), unit="MB",
        subject="peak memory of {name}", missing="not measured here", timed=False),
    BudgetKind(
        name="accuracy",
        signature=Signature(("atol", "rtol", "vs", "of", "rel_l2"),
                            non_negative=("atol", "rtol", "rel_l2")),
        description="candidate outputs match `vs` outputs (element-wise, or relative L2 "
                    "error at most rel_l2).",
        evaluate=_accuracy, reference_by_default=True, report_name="accuracy vs {vs}",
        timed=False,
        budget_formats={"rel_l2_error": "rel L2 <= {budget:g}", "token_ids": "equal token ids",
                        "*": "atol {budget:g}"}),
    BudgetKind(
        name="cold_start",
        signature=Signature(("max_s", "of"), required=("max_s",), numbers=("max_s",)),
        description="preparation plus first call at most `max_s` seconds.",
        evaluate=per_value(_single(_cold_start_s)), unit="s"),
    BudgetKind(
        name="energy",
        signature=Signature(("max_mj", "of"), required=("max_mj",), numbers=("max_mj",)),
        description="energy per call at most `max_mj` (NVML).",
        evaluate=per_value(_single(lambda m: m.extra.get("energy_mj_per_call"))), unit="mJ",
        subject="energy per call of {name}",
        missing="needs NVML energy counters (an NVIDIA GPU)"),
    BudgetKind(
        name="roofline",
        signature=Signature(("min_fraction", "of"), required=("min_fraction",),
                            numbers=("min_fraction",),
                            fractions=(("min_fraction", "the peak"),)),
        description="achieved fraction of the device's roofline.",
        evaluate=per_value(_single(lambda m: m.extra.get("roofline_fraction"))),
        higher_is_better=True, subject="roofline fraction of {name}",
        missing="declare bytes= or flops= in measure() and have a device peak"),
)

for _kind in BUILTIN:
    register(_kind)


def _generation_kind(metric: str, what: str) -> BudgetKind:
    """``hwopt.ttft`` / ``hwopt.tpot``: percentiles of a generation variant's per-call
    figure (:mod:`pytest_hwopt.core.generation`), judged as per-call latencies are."""
    label = metric.upper()
    return BudgetKind(
        name=metric,
        signature=Signature(("p50_ms", "p95_ms", "p99_ms", "of"),
                            one_of=("p50_ms", "p95_ms", "p99_ms"),
                            numbers=("p50_ms", "p95_ms", "p99_ms")),
        description=f"{what} of a generation variant (hwopt_bench.generate), budget in ms.",
        evaluate=per_value(_generation_latency(metric)), unit="ms", sampled=True,
        gated_by_accuracy=True, subject=f"{{metric}} {label} of {{name}}", value_format=".3g",
        report_name=f"{label} {{metric}}",
        missing=f"{label} is measured for generation variants (hwopt_bench.generate) "
                "generating at least 2 tokens" if metric == "tpot" else
                f"{label} is measured for generation variants (hwopt_bench.generate)")


GENERATION: Final = (
    _generation_kind("ttft", "time to first token (the prefill)"),
    _generation_kind("tpot", "time per output token after the first (the decode): "
                             "(end-to-end - TTFT) / (tokens - 1)"),
)

for _kind in GENERATION:
    register(_kind)


# ---- serving under load (hwopt_bench.serve, hwopt_bench.loadgen) ----------------------------

def _goodput(ev: Evaluation, param: str) -> Figure | None:
    from pytest_hwopt.core.served import ServeMeasurement, slo_of
    cand = ev.candidate
    if not isinstance(cand, ServeMeasurement):
        return None
    slo = slo_of(ev.spec.options)
    return Figure(value=cand.goodput(slo), detail={"slo": slo.describe()})


def _failures(ev: Evaluation) -> list[Check]:
    from pytest_hwopt.core.served import run_check
    raw = ev.spec.values.get("max", 0.0)
    budget, _ = resolve_budget(raw, ev.device_keys)
    check = run_check(ev.candidate, 0.0 if budget is None else budget)
    if check is None:
        return [Check(kind="failures", variant=ev.candidate.name, vs=None, status=SKIPPED,
                      metric="max", message=f"failures of {ev.candidate.name}: failed "
                      "requests are counted for serve and LoadGen variants")]
    return [check]


SERVING: Final = (
    BudgetKind(
        name="goodput",
        signature=Signature(("min", "ttft_ms", "tpot_ms", "e2e_ms", "of"), required=("min",),
                            one_of=("ttft_ms", "tpot_ms", "e2e_ms"), numbers=("min",),
                            settings=("ttft_ms", "tpot_ms", "e2e_ms")),
        description="completed requests per second that met every SLO given (ttft_ms, "
                    "tpot_ms, e2e_ms) at least `min`, for serve variants.",
        evaluate=per_value(_goodput), unit="req/s", higher_is_better=True,
        subject="goodput of {name}", value_format=".3g",
        missing="goodput is measured for serve variants (hwopt_bench.serve)"),
    BudgetKind(
        name="failures",
        signature=Signature(("max", "of"), required=("max",), non_negative=("max",)),
        description="at most `max` failed requests of a serve variant (below 1: a fraction "
                    "of those sent); without it any failure fails, as does an INVALID "
                    "LoadGen run.",
        evaluate=_failures, report_name="failed requests", timed=False,
        budget_formats={"*": "<= {budget:g} failed"}),
)

for _kind in SERVING:
    register(_kind)
