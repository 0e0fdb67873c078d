"""LLM generation as figures: time to first token, time per output token, inter-token latency.

Pure: no pytest, no torch. A generation call is described by clock readings (seconds):
when the call started, when each new token was ready, and when the call returned. From
them, per call (the definitions of vLLM's serving benchmark, ``calculate_metrics`` in
``benchmarks/benchmark_serving.py`` of vllm-project/vllm):

- **TTFT** (time to first token) = first token - start: the prefill, plus the first
  decoding step's sampling;
- **ITL** (inter-token latencies) = the gaps between successive tokens' readings, one per
  token after the first; their percentiles are taken over the gaps of all calls pooled;
- **TPOT** (time per output token) = (end-to-end - TTFT) / (tokens - 1), the decode's
  mean cost per token, undefined for a single token (vLLM leaves such a request out);
- **end-to-end** = end - start.

optimum-benchmark splits a generation the same way (``optimum_benchmark/scenarios/
inference/scenario.py`` of huggingface/optimum-benchmark): *prefill* is a ``generate``
forced to one new token (its latency is the TTFT), *decode* is the rest of the call
(end-to-end - prefill), and decode throughput counts the tokens after the first.
Percentiles are linear (Hyndman-Fan type 7, :func:`pytest_hwopt.core.stats.percentile`),
as ``numpy.percentile``'s default that vLLM uses.

The engine times whole calls as it times any variant; :class:`GenerationLog` keeps each
call's readings and learns from the timer which calls were timed samples and which of
those were disturbed, so TTFT and TPOT are read from the same undisturbed samples and
rounds as the end-to-end time (:class:`GenerationMeasurement`).

Greedy token ids are compared exactly (:func:`first_difference`): a speedup between two
generation variants counts only when their ids agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pytest_hwopt.core import stats
from pytest_hwopt.core.checks import FAILED, PASSED, Check
from pytest_hwopt.core.measurement import Measurement, MeasurementExtra
from pytest_hwopt.core.metric_names import GENERATION_METRICS
from pytest_hwopt.core.timing import Timed, Timer, Work, time_flagged

#: the figures of a generation variant a budget or a speedup may be read from
METRICS: Final = GENERATION_METRICS
#: percentiles written to the results (``ttft_p50_ms`` ...)
PERCENTILES: Final = (50, 95, 99)


@dataclass(frozen=True)
class CallMetrics:
    """What one generation call took (ms), and how many new tokens it produced.

    ``tpot_ms`` is None for a single token (no decode step to divide by).
    """

    ttft_ms: float
    tpot_ms: float | None
    itl_ms: tuple[float, ...]
    e2e_ms: float
    tokens: int


def call_metrics(start_s: float, token_s: Sequence[float], end_s: float) -> CallMetrics:
    """TTFT, TPOT, ITL and end-to-end time (ms) of one call from clock readings (s).

    ``start_s``: the call began; ``token_s``: each new token was ready, in order (one
    reading per decoding step; a batch's sequences share it); ``end_s``: the call returned.
    Raises ``ValueError`` for no token reading, or readings out of order.
    """
    if not token_s:
        raise ValueError("a generation call with no token reading: no new token was "
                         "produced, or the streamer was not called")
    times = [start_s, *token_s, end_s]
    for n, (a, b) in enumerate(zip(times, times[1:])):
        if b < a:
            raise ValueError(f"clock readings out of order: reading {n + 1} ({b!r} s) "
                             f"before reading {n} ({a!r} s) (start, tokens, end)")
    ttft = (token_s[0] - start_s) * 1000.0
    e2e = (end_s - start_s) * 1000.0
    count = len(token_s)
    itl = tuple((b - a) * 1000.0 for a, b in zip(token_s, token_s[1:]))
    tpot = (e2e - ttft) / (count - 1) if count > 1 else None
    return CallMetrics(ttft_ms=ttft, tpot_ms=tpot, itl_ms=itl, e2e_ms=e2e, tokens=count)


def merge(calls: Sequence[CallMetrics]) -> CallMetrics:
    """Several calls timed as one sample: their means (ITLs pooled). ValueError if empty."""
    if not calls:
        raise ValueError("no calls to merge")
    if len(calls) == 1:
        return calls[0]
    tpots = [c.tpot_ms for c in calls]
    return CallMetrics(
        ttft_ms=stats.mean([c.ttft_ms for c in calls]),
        tpot_ms=None if any(t is None for t in tpots)
        else stats.mean([t for t in tpots if t is not None]),
        itl_ms=tuple(x for c in calls for x in c.itl_ms),
        e2e_ms=stats.mean([c.e2e_ms for c in calls]),
        tokens=calls[0].tokens)


class GenerationLog:
    """Every call of one generation variant, and which of them were timed samples.

    The variant's callable :meth:`add`\\ s each call's metrics. A timer wrapper calls
    :meth:`begin_block` before a block of timed samples and :meth:`end_block` after it,
    with the block's per-sample disturbed flags: the calls added in between are that
    block's samples (``calls_per_sample`` calls each), in order. A block in which this
    variant made no call belongs to another variant and is ignored.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[CallMetrics] = []
        #: per timed sample: its metrics (merged over its calls) and its disturbed flag
        self.samples: list[CallMetrics] = []
        self.disturbed: list[bool] = []
        #: per block (one block per round): the sample indices it holds
        self.blocks: list[range] = []
        self._open: int | None = None

    def add(self, call: CallMetrics) -> None:
        self.calls.append(call)

    def clear(self) -> None:
        """Forget every call (before a new run)."""
        self.calls.clear()
        self.samples.clear()
        self.disturbed.clear()
        self.blocks.clear()
        self._open = None

    def begin_block(self) -> None:
        self._open = len(self.calls)

    def end_block(self, disturbed: Sequence[bool], calls_per_sample: int) -> None:
        """Close the block begun last. ValueError when this variant made calls in it but
        not ``len(disturbed) * calls_per_sample`` of them (its callable generated more
        or fewer times per call than once)."""
        begun, self._open = self._open, None
        if begun is None:
            raise ValueError(f"{self.name}: end_block without begin_block")
        made = self.calls[begun:]
        if not made:
            return
        if len(made) != len(disturbed) * calls_per_sample:
            raise ValueError(f"generation variant {self.name!r}: {len(made)} generate calls "
                             f"in a block of {len(disturbed)} samples of {calls_per_sample} "
                             "call(s); each call must generate once")
        first = len(self.samples)
        for i, flag in enumerate(disturbed):
            self.samples.append(merge(made[i * calls_per_sample:(i + 1) * calls_per_sample]))
            self.disturbed.append(bool(flag))
        self.blocks.append(range(first, len(self.samples)))

    def measurement(self, timed: Measurement, batch_size: int,
                    token_ids: Any = None, token_ids_after: Any = None,
                    prompt_digest: str = "") -> GenerationMeasurement:
        """``timed`` (the engine's measurement of this variant) with the generation
        figures. Without timed blocks (a single untimed call, ``--hwopt-disable``) every
        call is a sample. ValueError when the blocks do not match ``timed``'s rounds."""
        samples, disturbed, blocks = self.samples, self.disturbed, self.blocks
        if not blocks:
            samples = list(self.calls[:len(timed.samples_ms)] or self.calls)
            disturbed = [False] * len(samples)
            blocks = [range(len(samples))] if samples else []
        elif len(blocks) != len(timed.rounds_ms) or len(samples) != len(timed.samples_ms):
            raise ValueError(f"generation variant {self.name!r}: {len(blocks)} blocks of "
                             f"{len(samples)} samples logged, the engine timed "
                             f"{len(timed.rounds_ms)} rounds of {len(timed.samples_ms)}")
        fields = {f.name: getattr(timed, f.name) for f in dataclasses.fields(Measurement)}
        fields["disturbed"] = list(timed.disturbed) if self.blocks else disturbed
        tpots = [s.tpot_ms for s in samples]
        has_tpot = bool(samples) and all(t is not None for t in tpots)
        return GenerationMeasurement(
            **fields,
            ttft_samples_ms=[s.ttft_ms for s in samples],
            tpot_samples_ms=[t for t in tpots if t is not None] if has_tpot else [],
            itl_samples_ms=[list(s.itl_ms) for s in samples],
            ttft_rounds_ms=_round_values([s.ttft_ms for s in samples], disturbed, blocks),
            tpot_rounds_ms=_round_values([t or 0.0 for t in tpots], disturbed, blocks)
            if has_tpot else [],
            output_tokens=samples[0].tokens if samples else 0,
            batch_size=batch_size, prompt_digest=prompt_digest,
            token_ids=token_ids, token_ids_after=token_ids_after)


class MarkingTimer:
    """A timer that tells generation logs which calls are timed samples.

    It times as ``inner`` does (the engine's timer: host clock, CUDA events); around each
    block of flagged samples (the engine's timed samples; warm-up and single calls are
    timed with :meth:`time_samples`, unmarked) it calls every log's
    :meth:`GenerationLog.begin_block` and :meth:`GenerationLog.end_block`. Other
    attributes (``one_call_per_sample``) are ``inner``'s.
    """

    def __init__(self, inner: Timer) -> None:
        self.inner = inner
        self.name = inner.name
        self.logs: list[GenerationLog] = []

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def time_samples(self, fn: Work, calls_per_sample: int, samples: int) -> list[float]:
        return self.inner.time_samples(fn, calls_per_sample, samples)

    def time_flagged(self, fn: Work, calls_per_sample: int, samples: int) -> Timed:
        for log in self.logs:
            log.begin_block()
        timed = time_flagged(self.inner, fn, calls_per_sample, samples)
        for log in self.logs:
            log.end_block(timed.disturbed, calls_per_sample)
        return timed


@dataclass
class GenerationSource:
    """A registered generation variant: ``fn`` makes one call (and adds it to ``log``);
    ``items`` new tokens per call over the batch; ``token_ids`` turns an output into one
    list of ids per sequence."""

    fn: Callable[[], Any]
    log: GenerationLog
    batch_size: int
    items: int
    extra: MeasurementExtra
    token_ids: Callable[[Any], Any]
    prompt_digest: str = ""
    #: one more call, untimed, that says which attention kernels ran (a profiler's
    #: reading: ``attention_backends``, ``attention_ops``), made after the run
    evidence: Callable[[], Mapping[str, Any]] | None = None

    def measurement(self, timed: Measurement, *, with_ids: bool = True
                    ) -> GenerationMeasurement:
        """``timed`` with its generation figures (and token ids, unless ``with_ids`` is
        False: between rounds)."""
        out = self.log.measurement(
            timed, self.batch_size,
            self.token_ids(timed.output) if with_ids else None,
            self.token_ids(timed.output_after) if with_ids else None, self.prompt_digest)
        if with_ids and self.evidence is not None:
            out.extra.update(self.evidence())  # type: ignore[typeddict-item]
        return out


#: aten operators and kernel names by the attention implementation they belong to, most
#: specific first. Operators: PyTorch's scaled_dot_product_attention dispatch
#: (``aten::_scaled_dot_product_flash_attention`` and its ``_for_cpu`` form, the
#: memory-efficient, cuDNN and math paths); kernels: FlashAttention's ``flash_fwd``
#: kernels, the memory-efficient path's CUTLASS ``fmha_cutlassF`` kernels, cuDNN's fused
#: attention. A softmax without any SDPA operator is attention written out (eager).
ATTENTION_PATTERNS: Final = (
    ("flash", ("_scaled_dot_product_flash_attention", "flash_fwd")),
    ("memory-efficient", ("_scaled_dot_product_efficient_attention",
                          "_efficient_attention_forward", "fmha_cutlass")),
    ("cudnn", ("_scaled_dot_product_cudnn_attention", "cudnn_generated_fort_native_sdpa")),
    ("math", ("_scaled_dot_product_attention_math",)),
)


def attention_backends(names: Iterable[str]) -> list[str]:
    """Which attention implementations ran, from a profiler's operator and kernel names:
    any of "flash", "memory-efficient", "cudnn", "math" (the SDPA backends), or "eager"
    (softmax with no SDPA operator: attention written out as matmuls and a softmax), in
    that order; empty when no attention ran."""
    names = list(names)
    found = [backend for backend, parts in ATTENTION_PATTERNS
             if any(part in name for name in names for part in parts)]
    sdpa = any("scaled_dot_product" in name for name in names)
    if not found and not sdpa and any(name.endswith("softmax") for name in names):
        found.append("eager")
    return found


def attention_ops(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that identify attention (sorted, unique)."""
    parts = [p for _, group in ATTENTION_PATTERNS for p in group] + ["scaled_dot_product",
                                                                     "softmax"]
    return sorted({n for n in names if any(p in n for p in parts)})


def _round_values(values: Sequence[float], disturbed: Sequence[bool],
                  blocks: Sequence[range]) -> list[float]:
    """Per block: the median of its undisturbed values, else of all (the engine's rule for
    a round's value)."""
    out = []
    for block in blocks:
        clean = [values[i] for i in block if not disturbed[i]]
        out.append(stats.median(clean or [values[i] for i in block]))
    return out


@dataclass
class GenerationMeasurement(Measurement):
    """A generation variant's measurement: the engine's end-to-end timing of each call
    (``samples_ms``, ``rounds_ms``; ``items`` = new tokens per call over the batch) plus,
    aligned with its samples and rounds, each call's TTFT and TPOT (ms) and ITLs.

    Statistics are read from the undisturbed samples, as for the end-to-end time.
    ``token_ids``/``token_ids_after``: the new tokens' ids, one list per sequence, of the
    first call and of a call after timing.
    """

    ttft_samples_ms: list[float] = field(default_factory=list)
    tpot_samples_ms: list[float] = field(default_factory=list)
    itl_samples_ms: list[list[float]] = field(default_factory=list)
    ttft_rounds_ms: list[float] = field(default_factory=list)
    tpot_rounds_ms: list[float] = field(default_factory=list)
    output_tokens: int = 0
    batch_size: int = 1
    #: identifies the prompt (its token ids): variants of other prompts generate other tokens
    prompt_digest: str = ""
    token_ids: Any = field(default=None, repr=False, compare=False)
    token_ids_after: Any = field(default=None, repr=False, compare=False)

    def _clean(self, values: Sequence[float]) -> list[float]:
        flags = self.disturbed
        clean = [v for i, v in enumerate(values) if i >= len(flags) or not flags[i]]
        return clean or list(values)

    def metric_samples_ms(self, metric: str) -> list[float]:
        """Per-sample values of ``metric`` ("ttft" or "tpot"), all samples (ms)."""
        if metric not in METRICS:
            raise ValueError(f"unknown generation metric {metric!r}; known: "
                             f"{', '.join(METRICS)}")
        return list(self.ttft_samples_ms if metric == "ttft" else self.tpot_samples_ms)

    def view(self, metric: str) -> Measurement:
        """A plain measurement whose samples and rounds are ``metric``'s (ms per call), with
        this one's disturbed flags: every figure of a per-call time (percentiles, a ratio
        of medians over paired rounds) reads it as it reads an end-to-end time.
        ValueError for an unknown metric, or TPOT of single-token calls."""
        samples = self.metric_samples_ms(metric)
        rounds = self.ttft_rounds_ms if metric == "ttft" else self.tpot_rounds_ms
        if not samples:
            raise ValueError(f"{metric.upper()} of {self.name!r} is not defined: each call "
                             "generated one token (TPOT needs max_new_tokens >= 2)")
        return Measurement(name=self.name, samples_ms=samples, rounds_ms=list(rounds),
                           disturbed=list(self.disturbed),
                           rounds_disturbed=list(self.rounds_disturbed), items=1,
                           timer=self.timer, extra=self.extra, output=self.output,
                           output_after=self.output_after)

    def _percentile(self, metric: str, q: float) -> float | None:
        if metric == "itl":
            pooled = [x for s in self._clean_itl() for x in s]
            return stats.percentile(pooled, q) if pooled else None
        values = self._clean(self.metric_samples_ms(metric))
        return stats.percentile(values, q) if values else None

    def _clean_itl(self) -> list[list[float]]:
        flags = self.disturbed
        clean = [v for i, v in enumerate(self.itl_samples_ms)
                 if i >= len(flags) or not flags[i]]
        return clean or list(self.itl_samples_ms)

    @property
    def ttft_p50_ms(self) -> float | None:
        return self._percentile("ttft", 50)

    @property
    def ttft_p95_ms(self) -> float | None:
        return self._percentile("ttft", 95)

    @property
    def ttft_p99_ms(self) -> float | None:
        return self._percentile("ttft", 99)

    @property
    def tpot_p50_ms(self) -> float | None:
        return self._percentile("tpot", 50)

    @property
    def tpot_p95_ms(self) -> float | None:
        return self._percentile("tpot", 95)

    @property
    def tpot_p99_ms(self) -> float | None:
        return self._percentile("tpot", 99)

    @property
    def itl_p50_ms(self) -> float | None:
        return self._percentile("itl", 50)

    @property
    def itl_p95_ms(self) -> float | None:
        return self._percentile("itl", 95)

    @property
    def itl_p99_ms(self) -> float | None:
        return self._percentile("itl", 99)

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second over the batch, at the median end-to-end time."""
        return self.throughput

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for metric in ("ttft", "tpot", "itl"):
            for q in PERCENTILES:
                out[f"{metric}_p{q}_ms"] = self._percentile(metric, q) \
                    if metric != "tpot" or self.tpot_samples_ms else None
        out.update({
            "generation": True,
            "output_tokens": self.output_tokens,
            "batch_size": self.batch_size,
            "prompt_digest": self.prompt_digest,
            "tokens_per_s": self.tokens_per_s,
            "ttft_samples_ms": list(self.ttft_samples_ms),
            "tpot_samples_ms": list(self.tpot_samples_ms),
            "ttft_rounds_ms": list(self.ttft_rounds_ms),
            "tpot_rounds_ms": list(self.tpot_rounds_ms),
            "itl_samples_ms": [list(s) for s in self.itl_samples_ms],
            "metric_definitions": DEFINITIONS,
        })
        return out


#: written with each generation result: where the definitions come from
DEFINITIONS: Final = ("TTFT, TPOT = (e2e - TTFT) / (tokens - 1), ITL as vLLM's "
                      "benchmark_serving.py calculate_metrics; prefill/decode as "
                      "optimum-benchmark's inference scenario")


def is_generation(m: Measurement | None) -> bool:
    """Whether ``m`` is a generation variant's measurement."""
    return isinstance(m, GenerationMeasurement)


@dataclass(frozen=True)
class TokenDifference:
    """Where two token-id outputs first differ: ``sequence`` (batch row) and ``position``
    (new-token index), with each side's id there (None past a side's end), or a different
    number of sequences (``position`` -1)."""

    sequence: int
    position: int
    candidate: int | None
    reference: int | None

    def describe(self, candidate: str, reference: str) -> str:
        if self.position < 0:
            return (f"{candidate} returned {self.candidate} sequences, {reference} "
                    f"{self.reference}")
        return (f"token ids of {candidate} differ from {reference}'s at sequence "
                f"{self.sequence}, position {self.position} ({self.candidate} vs "
                f"{self.reference})")


def first_difference(candidate: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]
                     ) -> TokenDifference | None:
    """The first place where two batches of token ids differ, or None when equal.

    Each argument is one sequence of ids per batch row. Rows are compared in order,
    position by position; a shorter row differs at its end.
    """
    if len(candidate) != len(reference):
        return TokenDifference(-1, -1, len(candidate), len(reference))
    for row, (a, b) in enumerate(zip(candidate, reference)):
        for pos in range(max(len(a), len(b))):
            x = int(a[pos]) if pos < len(a) else None
            y = int(b[pos]) if pos < len(b) else None
            if x != y:
                return TokenDifference(row, pos, x, y)
    return None


def same_prompt(a: GenerationMeasurement, b: GenerationMeasurement) -> bool:
    """Whether two generation variants ran the same prompt (token ids and batch), so that
    greedy decoding must give them the same tokens."""
    return a.prompt_digest == b.prompt_digest and a.batch_size == b.batch_size


def token_difference(candidate: GenerationMeasurement, reference: GenerationMeasurement
                     ) -> str:
    """Why two generation variants' greedy outputs disagree (before or after timing), or
    "" when their token ids agree both times (or were not recorded)."""
    pairs = (("", candidate.token_ids, reference.token_ids),
             (" after timing", candidate.token_ids_after, reference.token_ids))
    for when, a, b in pairs:
        if a is None or b is None:
            continue
        diff = first_difference(a, b)
        if diff is not None:
            return diff.describe(candidate.name, reference.name) + when
    return ""


def token_check(candidate: GenerationMeasurement, reference: GenerationMeasurement,
                vs: str | None) -> Check:
    """The accuracy check of two generation variants: token ids equal, exactly."""
    why = token_difference(candidate, reference)
    if why:
        return Check(kind="accuracy", variant=candidate.name, vs=vs, status=FAILED,
                     metric="token_ids", budget=0.0, message=f"accuracy of {candidate.name}: "
                     f"{why}")
    return Check(kind="accuracy", variant=candidate.name, vs=vs, status=PASSED,
                 metric="token_ids", budget=0.0, measured=0.0,
                 message=f"accuracy of {candidate.name}: token ids equal to "
                         f"{reference.name}'s")
