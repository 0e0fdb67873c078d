"""What a load run against a server, or under MLPerf LoadGen, produced, as measurements
the budget kinds read.

Pure: no pytest, no torch, no HTTP. A **serve variant** (``hwopt_bench.serve``) is one
or more load runs (rounds) of the same requests against one server; per completed
request its TTFT, TPOT, ITLs and end-to-end time (vLLM's definitions, measured from the
request's *scheduled* send time: :mod:`pytest_hwopt.core.serving`). Its measurement,
:class:`ServeMeasurement`, is read as a generation variant's is: ``samples_ms`` are the
requests' end-to-end times and ``ttft_samples_ms``/``tpot_samples_ms`` theirs, pooled
over rounds, so ``hwopt.latency``, ``hwopt.ttft`` and ``hwopt.tpot`` judge percentiles
over requests with the same order-statistic bounds as per-call latencies. Per round it
keeps the round's median end-to-end, TTFT and TPOT (a speedup between two serve variants
is a ratio of medians over their paired rounds) and the round's milliseconds per output
token (``speedup(metric="throughput")``: the inverse of the output throughput, so the
ratio of the reference's to the candidate's is the candidate's throughput gain).

A **LoadGen variant** (``hwopt_bench.loadgen``) is one LoadGen test; its figures are
LoadGen's own (:class:`LoadGenMeasurement`): latency percentiles and QPS from its
summary, and its VALID/INVALID result, which decides every check of the variant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pytest_hwopt.core import stats
from pytest_hwopt.core.checks import FAILED, PASSED, Check
from pytest_hwopt.core.generation import GenerationMeasurement
from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.metric_names import THROUGHPUT
from pytest_hwopt.core.serving import Slo

#: the result keys of a serve variant's end-to-end percentiles
E2E_PERCENTILES: Final = (50, 95, 99)
#: written with each serve result: where the definitions come from
SERVE_DEFINITIONS: Final = (
    "TTFT, TPOT = (e2e - TTFT) / (tokens - 1), ITL, e2e, request and output throughput, "
    "goodput as vLLM's benchmarks/benchmark_serving.py (calculate_metrics); latency is "
    "measured from each request's scheduled send time")


#: the path of each OpenAI-compatible endpoint under a server's base URL
ENDPOINTS: Final[Mapping[str, str]] = {"completions": "/v1/completions",
                                       "chat": "/v1/chat/completions"}
SCENARIOS: Final = ("SingleStream", "Server", "Offline")


@dataclass(frozen=True)
class ServeLoad:
    """What ``hwopt_bench.serve`` sends: ``num_requests`` streaming requests to
    ``base_url`` + the endpoint's path, prompts taken in turn, at times drawn from a gamma
    process (shape ``burstiness``, mean gap ``1 / rate`` s; ``math.inf`` sends all at
    once), at most ``max_concurrency`` in flight (None: no limit), each asking for
    ``max_tokens`` tokens and given up after ``timeout_s`` s. Build it with :meth:`make`,
    which validates every argument.
    """

    name: str
    base_url: str
    prompts: tuple[str, ...]
    num_requests: int
    rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    max_tokens: int = 64
    model: str | None = None
    endpoint: str = "completions"
    timeout_s: float = 60.0
    seed: int = 0

    @classmethod
    def make(cls, name: object, base_url: object, prompts: object, num_requests: object,
             **kwargs: Any) -> ServeLoad:
        """A validated load; ``ValueError`` (``TypeError`` for a wrong type) naming the
        argument otherwise."""
        where = f"hwopt_bench.serve({name!r})"
        if not isinstance(name, str) or not name:
            raise ValueError(f"hwopt_bench.serve: name must be a non-empty string, got {name!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{where}: base_url must be an http:// or https:// URL (what "
                             f"hwopt_server returns), got {base_url!r}")
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts \
                or not all(isinstance(p, str) and p for p in prompts):
            raise TypeError(f"{where}: prompts must be a non-empty list of non-empty strings "
                            f"(taken in turn), got {prompts!r:.80}")
        load = cls(name=name, base_url=base_url.rstrip("/"), prompts=tuple(prompts),
                   num_requests=_count(where, "num_requests", num_requests), **kwargs)
        load._check(where)
        return load

    def _check(self, where: str) -> None:
        if not _number(self.rate) or math.isnan(self.rate) or self.rate <= 0:
            raise ValueError(f"{where}: rate must be a positive number of requests per second "
                             f"or math.inf (all at once), got {self.rate!r}")
        if not _number(self.burstiness) or not math.isfinite(self.burstiness) \
                or self.burstiness <= 0:
            raise ValueError(f"{where}: burstiness must be a positive finite number (1.0: "
                             f"Poisson arrivals), got {self.burstiness!r}")
        if self.max_concurrency is not None:
            _count(where, "max_concurrency", self.max_concurrency)
        _count(where, "max_tokens", self.max_tokens)
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ValueError(f"{where}: model must be a non-empty string or None, "
                             f"got {self.model!r}")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"{where}: endpoint must be one of "
                             f"{', '.join(map(repr, ENDPOINTS))}, got {self.endpoint!r}")
        if not _number(self.timeout_s) or not math.isfinite(self.timeout_s) \
                or self.timeout_s <= 0:
            raise ValueError(f"{where}: timeout_s must be a positive number of seconds, "
                             f"got {self.timeout_s!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"{where}: seed must be an int, got {self.seed!r}")

    @property
    def url(self) -> str:
        return self.base_url + ENDPOINTS[self.endpoint]

    def describe(self) -> dict[str, Any]:
        """How the load was sent, for the results (JSON-ready)."""
        return {"url": self.url, "endpoint": self.endpoint, "num_requests": self.num_requests,
                "rate": None if math.isinf(self.rate) else self.rate,
                "burstiness": self.burstiness, "max_concurrency": self.max_concurrency,
                "max_tokens": self.max_tokens, "model": self.model, "prompts": len(self.prompts),
                "timeout_s": self.timeout_s, "seed": self.seed}


@dataclass(frozen=True)
class LoadGenLoad:
    """What ``hwopt_bench.loadgen`` runs: ``fn(sample)`` as LoadGen's system under test in
    ``scenario`` over the query sample library ``samples``. Build it with :meth:`make`."""

    name: str
    fn: Any
    scenario: str
    samples: Sequence[Any]
    target_qps: float | None = None
    target_latency_ms: float | None = None
    min_duration_s: float = 10.0
    min_queries: int | None = None

    @classmethod
    def make(cls, name: object, fn: object, **kwargs: Any) -> LoadGenLoad:
        where = f"hwopt_bench.loadgen({name!r})"
        if not isinstance(name, str) or not name:
            raise ValueError(f"hwopt_bench.loadgen: name must be a non-empty string, "
                             f"got {name!r}")
        if not callable(fn):
            raise TypeError(f"{where}: fn must be a callable answering one query sample, "
                            f"got {type(fn).__name__}")
        load = cls(name=name, fn=fn, **kwargs)
        if load.scenario not in SCENARIOS:
            raise ValueError(f"{where}: scenario must be one of {', '.join(SCENARIOS)}, "
                             f"got {load.scenario!r}")
        if isinstance(load.samples, (str, bytes)) or not isinstance(load.samples, Sequence) \
                or not load.samples:
            raise TypeError(f"{where}: samples must be a non-empty sequence (the query "
                            f"sample library), got {type(load.samples).__name__}")
        if load.scenario == "Server" and load.target_qps is None:
            raise ValueError(f"{where}: the Server scenario needs target_qps (the rate "
                             "LoadGen sends queries at)")
        for key in ("target_qps", "target_latency_ms"):
            value = getattr(load, key)
            if value is not None and (not _number(value) or not math.isfinite(value)
                                      or value <= 0):
                raise ValueError(f"{where}: {key} must be a positive number, got {value!r}")
        if not _number(load.min_duration_s) or not math.isfinite(load.min_duration_s) \
                or load.min_duration_s < 0:
            raise ValueError(f"{where}: min_duration_s must be a non-negative number of "
                             f"seconds, got {load.min_duration_s!r}")
        if load.min_queries is not None:
            _count(where, "min_queries", load.min_queries)
        return load


def _count(where: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {key} must be an int >= 1, got {value!r}")
    return value


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RoundFigures:
    """One load run's figures (one round of a serve variant).

    Per completed request, in the order the requests were scheduled: ``ttft_ms`` (None
    when no content chunk came: not counted in TTFT), ``tpot_ms`` (None for a single
    output token), ``itl_ms`` (its inter-token gaps),
    ``e2e_ms``, ``tokens`` (output tokens). ``send_lag_ms``: every request's lag of its
    actual send behind its schedule (the client's own lag). ``failed``: requests that
    errored, ``first_error`` the first one's text. ``duration_s``: first scheduled send
    to last completion. ``client_behind``: the client fell behind its schedule
    (:func:`pytest_hwopt.core.serving.summarize`). ``summary``: the round's result keys.
    """

    ttft_ms: tuple[float | None, ...]
    tpot_ms: tuple[float | None, ...]
    itl_ms: tuple[tuple[float, ...], ...]
    e2e_ms: tuple[float, ...]
    tokens: tuple[int, ...]
    send_lag_ms: tuple[float, ...]
    failed: int
    first_error: str | None
    duration_s: float
    client_behind: bool = False
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return len(self.e2e_ms)

    @property
    def output_tokens(self) -> int:
        return sum(self.tokens)

    def good(self, slo: Slo) -> int:
        """Completed requests that met every objective of ``slo``."""
        return sum(slo.met(t, p, e) for t, p, e in zip(self.ttft_ms, self.tpot_ms,
                                                        self.e2e_ms))


@dataclass
class ServeMeasurement(GenerationMeasurement):
    """A serve variant's rounds, read as a generation variant's calls: one sample per
    completed request (ms), pooled over rounds; one round per load run.

    ``throughput_rounds_ms``: per round, milliseconds per output token (duration / output
    tokens): what ``speedup(metric="throughput")`` compares. ``slo``: the objectives of
    the test's goodput budget, set before the results are written (``goodput`` in them).
    """

    load_rounds: list[RoundFigures] = field(default_factory=list)
    throughput_rounds_ms: list[float] = field(default_factory=list)
    #: how the load was sent: rate, burstiness, concurrency, endpoint, URL ...
    load: dict[str, Any] = field(default_factory=dict)
    slo: Slo | None = None

    @classmethod
    def from_rounds(cls, name: str, rounds: Sequence[RoundFigures],
                    load: Mapping[str, Any]) -> ServeMeasurement:
        """The measurement of ``rounds`` (at least one) of serve variant ``name``."""
        if not rounds:
            raise ValueError(f"serve variant {name!r}: no load run")
        e2e = [x for r in rounds for x in r.e2e_ms]
        tpots = [t for r in rounds for t in r.tpot_ms]
        has_tpot = bool(tpots) and all(t is not None for t in tpots)
        tokens = [n for r in rounds for n in r.tokens]
        return cls(
            name=name, samples_ms=e2e,
            rounds_ms=[_median_or_inf(r.e2e_ms) for r in rounds],
            items=max(1, round(stats.median(tokens))) if tokens else 1,
            timer="host clock (load generator)",
            ttft_samples_ms=[x for r in rounds for x in r.ttft_ms if x is not None],
            tpot_samples_ms=[t for t in tpots if t is not None] if has_tpot else [],
            itl_samples_ms=[list(s) for r in rounds for s in r.itl_ms],
            ttft_rounds_ms=[_median_or_inf([t for t in r.ttft_ms if t is not None])
                            for r in rounds],
            tpot_rounds_ms=[_median_or_inf([t for t in r.tpot_ms if t is not None])
                            for r in rounds] if has_tpot else [],
            output_tokens=round(stats.median(tokens)) if tokens else 0,
            load_rounds=list(rounds),
            throughput_rounds_ms=[r.duration_s * 1000.0 / r.output_tokens
                                  if r.output_tokens else math.inf for r in rounds],
            load=dict(load))

    # ---- the figures of the whole variant (all rounds) ------------------------------------

    @property
    def completed(self) -> int:
        return sum(r.completed for r in self.load_rounds)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.load_rounds)

    @property
    def requests(self) -> int:
        return self.completed + self.failed

    @property
    def first_error(self) -> str | None:
        return next((r.first_error for r in self.load_rounds if r.first_error), None)

    @property
    def duration_s(self) -> float:
        return sum(r.duration_s for r in self.load_rounds)

    @property
    def request_throughput(self) -> float:
        """Completed requests per second over all rounds' durations."""
        return _per_s(self.completed, self.duration_s)

    @property
    def output_throughput(self) -> float:
        """Output tokens per second over all rounds' durations."""
        return _per_s(sum(r.output_tokens for r in self.load_rounds), self.duration_s)

    @property
    def tokens_per_s(self) -> float:
        return self.output_throughput

    @property
    def throughput(self) -> float:
        return self.output_throughput

    def goodput(self, slo: Slo) -> float:
        """Completed requests per second that met every objective of ``slo``."""
        return _per_s(sum(r.good(slo) for r in self.load_rounds), self.duration_s)

    @property
    def send_lag_p99_ms(self) -> float | None:
        lags = [x for r in self.load_rounds for x in r.send_lag_ms]
        return stats.percentile(lags, 99) if lags else None

    @property
    def client_behind(self) -> bool:
        return any(r.client_behind for r in self.load_rounds)

    def e2e_percentile(self, q: float) -> float | None:
        return stats.percentile(self.samples_ms, q) if self.samples_ms else None

    def metric_samples_ms(self, metric: str) -> list[float]:
        if metric == THROUGHPUT:
            return list(self.throughput_rounds_ms)
        return super().metric_samples_ms(metric)

    def view(self, metric: str) -> Measurement:
        """As :meth:`GenerationMeasurement.view`; ``"throughput"``: one sample and one
        round per load run, its milliseconds per output token."""
        if metric != THROUGHPUT:
            return super().view(metric)
        per_token = list(self.throughput_rounds_ms)
        return Measurement(name=self.name, samples_ms=per_token, rounds_ms=per_token,
                           items=1, timer=self.timer, extra=self.extra)

    @property
    def median_ms(self) -> float:
        return stats.median(self.samples_ms) if self.samples_ms else math.inf

    def to_dict(self) -> dict[str, Any]:
        if not self.samples_ms:  # every request failed: no latency to write
            out = _no_statistics(self)
            for metric in ("ttft", "tpot", "itl", "e2e"):
                for q in E2E_PERCENTILES:
                    out[f"{metric}_p{q}_ms"] = None
        else:
            out = super().to_dict()
            for q in E2E_PERCENTILES:
                out[f"e2e_p{q}_ms"] = self.e2e_percentile(q)
        out.update({
            "serve": True,
            "generation": False,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "tokens_per_s": self.output_throughput,
            "completed": self.completed,
            "failed": self.failed,
            "first_error": self.first_error,
            "duration_s": self.duration_s,
            "send_lag_p99_ms": self.send_lag_p99_ms,
            "client_behind": self.client_behind,
            "load": dict(self.load),
            "load_rounds": [dict(r.summary) for r in self.load_rounds],
            "throughput_rounds_ms": list(self.throughput_rounds_ms),
            "metric_definitions": SERVE_DEFINITIONS,
        })
        for key in ("rounds_ms", "ttft_rounds_ms", "tpot_rounds_ms", "throughput_rounds_ms"):
            if key in out:  # a load run without a completed request has no value (JSON)
                out[key] = [x for x in out[key] if math.isfinite(x)]
        if self.slo is not None:
            out["goodput"] = self.goodput(self.slo)
            out["goodput_slo"] = self.slo.describe()
        return out


@dataclass
class LoadGenMeasurement(Measurement):
    """A LoadGen variant: MLPerf LoadGen's own figures of one test.

    ``samples_ms`` are the per-query latencies where LoadGen's logs give them, else empty;
    the percentiles and ``qps`` are LoadGen's (its summary), not recomputed.
    ``loadgen_result`` is "VALID" or "INVALID" (``invalid_reason`` then says why);
    ``error`` the first exception the system under test raised, naming its sample.
    """

    loadgen_result: str = "VALID"
    invalid_reason: str = ""
    error: str = ""
    scenario: str = ""
    qps: float | None = None
    percentiles_ms: dict[str, float | None] = field(default_factory=dict)
    loadgen: dict[str, Any] = field(default_factory=dict)

    def queries_text(self) -> str:
        """``, 1200 queries; early stopping needs 662 for p99``: how many queries ran and
        how many LoadGen's early-stopping rule needs for each percentile it reports."""
        queries = self.loadgen.get("queries")
        needed = self.loadgen.get("min_queries_for") or {}
        text = f", {queries} queries" if queries is not None else ""
        if needed:
            text += "; early stopping needs " + ", ".join(
                f"{n} for {p}" for p, n in needed.items())
        return text

    def percentile_ms(self, param: str) -> float | None:
        """LoadGen's figure for a latency budget parameter (``p95_ms``, ``mean_ms``)."""
        key = "median_ms" if param == "p50_ms" else param
        return self.percentiles_ms.get(key)

    @property
    def valid(self) -> bool:
        return self.loadgen_result == "VALID" and not self.error

    @property
    def throughput(self) -> float:
        return self.qps if self.qps is not None else 0.0

    @property
    def median_ms(self) -> float:
        value = self.percentiles_ms.get("median_ms")
        return value if value is not None else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The usual statistics keys, with LoadGen's figures where it gives them (its
        median, mean, p50/p95/p99 and minimum; throughput its QPS)."""
        out = super().to_dict() if self.samples_ms else _no_statistics(self)
        theirs = {"median_ms": "median_ms", "p50_ms": "median_ms", "mean_ms": "mean_ms",
                  "p95_ms": "p95_ms", "p99_ms": "p99_ms", "min_ms": "min_ms"}
        for key, source in theirs.items():
            if self.percentiles_ms.get(source) is not None:
                out[key] = self.percentiles_ms[source]
        out.update({"loadgen": True, "scenario": self.scenario,
                    "loadgen_result": self.loadgen_result,
                    "invalid_reason": self.invalid_reason, "error": self.error or None,
                    "qps": self.qps, "throughput_per_s": self.qps})
        out.update(self.percentiles_ms)
        out.update(self.loadgen)
        return out


def run_check(m: Measurement, max_failed: float) -> Check | None:
    """The check that a serve or LoadGen variant's run itself succeeded, or None for
    other variants.

    A serve variant passes when at most ``max_failed`` of its requests failed (a count;
    below 1, a fraction of the requests sent), and fails with the first error's text
    otherwise; a LoadGen variant passes when LoadGen judged its run VALID and its system
    under test raised nothing.
    """
    if isinstance(m, ServeMeasurement):
        sent = m.requests
        allowed = max_failed if max_failed >= 1 or max_failed == 0 else max_failed * sent
        detail = f"{m.failed} of {sent} requests failed"
        if m.failed > allowed:
            allowed_text = (f"{max_failed:g}" if max_failed >= 1 or max_failed == 0
                            else f"{max_failed:.0%}")
            return Check(kind="failures", variant=m.name, vs=None, status=FAILED,
                         metric="max", budget=float(max_failed), measured=float(m.failed),
                         message=f"requests of {m.name}: {detail} (at most {allowed_text} "
                                 f"allowed); first: {m.first_error}")
        return Check(kind="failures", variant=m.name, vs=None, status=PASSED, metric="max",
                     budget=float(max_failed), measured=float(m.failed),
                     message=f"requests of {m.name}: {detail}")
    if isinstance(m, LoadGenMeasurement):
        if m.error:
            return Check(kind="failures", variant=m.name, vs=None, status=FAILED,
                         metric="max", budget=0.0, message=f"LoadGen run of {m.name}: the "
                         f"system under test raised: {m.error}")
        if m.loadgen_result != "VALID":
            return Check(kind="failures", variant=m.name, vs=None, status=FAILED,
                         metric="max", budget=0.0,
                         message=f"LoadGen run of {m.name}: {m.loadgen_result}: "
                                 f"{m.invalid_reason or 'LoadGen gave no reason'}")
        return Check(kind="failures", variant=m.name, vs=None, status=PASSED, metric="max",
                     budget=0.0, measured=0.0,
                     message=f"LoadGen run of {m.name}: VALID ({m.scenario}"
                             f"{m.queries_text()})")
    return None


def _no_statistics(m: Measurement) -> dict[str, Any]:
    """A result's statistics keys for a variant without samples: None, not made up."""
    out: dict[str, Any] = {key: None for key in (
        "median_ms", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "min_ms", "iqr_ms",
        "throughput_per_s", "first_call_ms", "prepare_s", "peak_memory_mb",
        "minor_faults_per_call")}
    out.update({"variant": m.name, "items": m.items, "calls": 0, "calls_per_sample": 1,
                "rounds": len(m.rounds_ms), "warmup_calls": 0, "memory_kind": "",
                "timer": m.timer, "percentile_method": stats.PERCENTILE_METHOD,
                "samples": [], "rounds_ms": [x for x in m.rounds_ms if math.isfinite(x)],
                "disturbed": [], "disturbed_fraction": 0.0, "rounds_disturbed": []})
    return out


def slo_of(options: Mapping[str, str]) -> Slo:
    """The objectives of a goodput budget from its spec's options (``ttft_ms`` ... as
    text, :class:`pytest_hwopt.core.kinds.Signature` ``settings``)."""
    def ms(name: str) -> float | None:
        value = options.get(name)
        return None if value is None else float(value)

    return Slo(ttft_ms=ms("ttft_ms"), tpot_ms=ms("tpot_ms"), e2e_ms=ms("e2e_ms"))


def is_load(m: Measurement | None) -> bool:
    """Whether ``m`` comes from a load run (serve or LoadGen), not from timed calls."""
    return isinstance(m, (ServeMeasurement, LoadGenMeasurement))


def _median_or_inf(values: Sequence[float]) -> float:
    return stats.median(values) if values else math.inf


def _per_s(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0
