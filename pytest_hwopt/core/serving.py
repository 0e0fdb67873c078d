"""Serving under load as figures: the send schedule, per-request latencies, the run's summary.

Pure: standard library and NumPy only (no pytest, no torch, no HTTP client). A load run
is a list of :class:`RequestRecord`, each a set of clock readings (seconds, one clock for
the whole run); the HTTP client that fills them is ``pytest_hwopt.backends.openai_load``.

The definitions follow vLLM's serving benchmark (``get_request`` and ``calculate_metrics``
in ``benchmarks/benchmark_serving.py`` of vllm-project/vllm), with one deliberate change:
every latency is measured from the request's **scheduled** send time, not from the moment
the client got round to sending it. A client that falls behind its schedule, or requests
queued behind a concurrency limit, would otherwise hide the queueing they cause
("coordinated omission"); here that wait is part of the latency a user would see.

Per request (seconds, :class:`RequestRecord`'s properties):

- **TTFT** = first content chunk - scheduled time;
- **ITL** = the gaps between successive content chunks, one per chunk after the first. A
  chunk that carries several tokens still gives one gap (vLLM does the same for the
  chunks it receives); the ITL is a gap between the client's readings, not per token;
- **TPOT** = (e2e - TTFT) / (output tokens - 1), None for fewer than 2 tokens;
- **e2e** = end of the response - scheduled time;
- **send lag** = when the client released the request - scheduled time: the client's own
  lateness, excluding any wait for a concurrency slot (that wait is the server's queue,
  and counts in the latencies above, not here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pytest_hwopt.core import stats

#: percentiles written to the summary (``ttft_p50_ms`` ...)
PERCENTILES: Final = (50, 95, 99)
#: the latency figures of the summary, in this order (``<metric>_p<q>_ms``)
LATENCY_METRICS: Final = ("ttft", "tpot", "itl", "e2e")
#: the client is behind when its send lag p99 exceeds the larger of this floor ...
CLIENT_BEHIND_FLOOR_S: Final = 1e-3
#: ... and this share of the mean scheduled gap between requests
CLIENT_BEHIND_GAP_SHARE: Final = 0.05

Summary = dict[str, float | int | bool]


def send_schedule(num_requests: int, rate: float, burstiness: float = 1.0,
                  seed: int = 0) -> list[float]:
    """Send offsets (s from the run's start, non-decreasing) of ``num_requests`` requests.

    A gamma renewal process, as vLLM's ``get_request``: the gaps between sends are
    Gamma(shape=``burstiness``, scale=1 / (``rate`` * ``burstiness``)), so their mean is
    1 / ``rate`` (requests/s) and their coefficient of variation 1 / sqrt(``burstiness``):
    1.0 is a Poisson process, below 1 burstier, above 1 more regular. As in vLLM the first
    request is sent at once (offset 0; ``get_request`` sleeps after each request) and
    ``rate=math.inf`` sends all at offset 0. Seeded with ``numpy.random.default_rng(seed)``:
    the same arguments give the same schedule.

    Raises ``ValueError`` for ``num_requests`` < 1, ``rate`` <= 0 or NaN, ``burstiness``
    <= 0 or not finite.
    """
    if num_requests < 1:
        raise ValueError(f"num_requests must be at least 1, got {num_requests}")
    if math.isnan(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number of requests/s (or inf), got {rate}")
    if not math.isfinite(burstiness) or burstiness <= 0:
        raise ValueError(f"burstiness must be positive and finite, got {burstiness}")
    if math.isinf(rate):
        return [0.0] * num_requests
    import numpy as np  # here, not at import: the plugin loads this module at start-up

    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=num_requests - 1)
    return [0.0, *(float(t) for t in np.cumsum(gaps))]


def output_token_count(usage_tokens: int | None, chunk_count: int) -> int:
    """A response's output tokens: the server's ``usage.completion_tokens`` when it gave
    one, else the number of non-empty content chunks (one token per chunk, which
    undercounts a server that packs several tokens into a chunk)."""
    return usage_tokens if usage_tokens is not None else chunk_count


@dataclass(frozen=True)
class RequestRecord:
    """One request of a load run: clock readings (s, the run's one clock) and its outcome.

    ``index``: its place in the schedule; ``prompt_index``: which prompt it sent;
    ``scheduled_s``: when the schedule said to send it; ``sent_s``: when the request was
    written to the connection (None if it never was: no connection); ``chunk_s``: when each
    streamed chunk with non-empty content arrived, in order; ``end_s``: when the response
    ended (or the request failed); ``output_tokens``: :func:`output_token_count`;
    ``error``: why it failed, None for a completed request; ``usage_tokens``: the stream's
    ``usage.completion_tokens``, None without usage; ``released_s``: when the client woke
    to send it, before any wait for a concurrency slot (None: not recorded, then the send
    lag falls back to ``sent_s``).
    """

    index: int
    prompt_index: int
    scheduled_s: float
    sent_s: float | None
    chunk_s: tuple[float, ...]
    end_s: float
    output_tokens: int
    error: str | None = None
    usage_tokens: int | None = None
    released_s: float | None = None

    @property
    def ok(self) -> bool:
        """True for a completed request (no error)."""
        return self.error is None

    @property
    def ttft_s(self) -> float | None:
        """First content chunk - scheduled time (s); None without a content chunk."""
        return self.chunk_s[0] - self.scheduled_s if self.chunk_s else None

    @property
    def itl_s(self) -> tuple[float, ...]:
        """Gaps between successive content chunks (s): one per chunk after the first."""
        c = self.chunk_s
        return tuple(b - a for a, b in zip(c, c[1:]))

    @property
    def e2e_s(self) -> float:
        """End - scheduled time (s)."""
        return self.end_s - self.scheduled_s

    @property
    def tpot_s(self) -> float | None:
        """(e2e - TTFT) / (output tokens - 1) (s), vLLM's TPOT; None for fewer than 2
        output tokens or without a content chunk."""
        ttft = self.ttft_s
        if ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - ttft) / (self.output_tokens - 1)

    @property
    def send_lag_s(self) -> float | None:
        """The client's lateness (s): ``released_s`` (else ``sent_s``) - scheduled time;
        None when neither was recorded."""
        at = self.released_s if self.released_s is not None else self.sent_s
        return None if at is None else at - self.scheduled_s


@dataclass(frozen=True)
class Slo:
    """Service-level objectives of vLLM's ``--goodput`` (ms, inclusive: a request meets one
    when its figure is at or below it); None: not part of the objective. At least one."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def __post_init__(self) -> None:
        given = {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "e2e_ms": self.e2e_ms}
        if all(v is None for v in given.values()):
            raise ValueError("an SLO needs at least one of ttft_ms, tpot_ms, e2e_ms")
        for name, value in given.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"SLO {name} must be a positive number of ms, got {value}")

    def met_by(self, record: RequestRecord) -> bool:
        """Whether a completed request meets every objective given. As vLLM, a request
        with fewer than 2 tokens has TPOT 0 here, and one without a content chunk TTFT 0."""
        def ms(value: float | None) -> float | None:
            return None if value is None else value * 1000.0

        return self.met(ms(record.ttft_s), ms(record.tpot_s), record.e2e_s * 1000.0)

    def met(self, ttft_ms: float | None, tpot_ms: float | None, e2e_ms: float) -> bool:
        """:meth:`met_by` on a request's figures in ms (None: not defined, counts as 0)."""
        checks = ((self.ttft_ms, ttft_ms), (self.tpot_ms, tpot_ms), (self.e2e_ms, e2e_ms))
        return all(limit is None or (value or 0.0) <= limit for limit, value in checks)

    def describe(self) -> str:
        """``TTFT <= 500 ms, TPOT <= 50 ms``."""
        return ", ".join(f"{name} <= {value:g} ms" for name, value in
                         (("TTFT", self.ttft_ms), ("TPOT", self.tpot_ms),
                          ("e2e", self.e2e_ms)) if value is not None)


def _percentiles_ms(name: str, samples_s: Sequence[float]) -> Summary:
    """``<name>_p<q>_ms`` for :data:`PERCENTILES`; NaN without samples."""
    return {f"{name}_p{q}_ms": stats.percentile(samples_s, q) * 1000.0 if samples_s
            else math.nan for q in PERCENTILES}


def mean_scheduled_gap_s(records: Sequence[RequestRecord]) -> float:
    """The mean gap between scheduled sends (s): their span / (n - 1); 0 for one request."""
    if len(records) < 2:
        return 0.0
    times = [r.scheduled_s for r in records]
    return (max(times) - min(times)) / (len(records) - 1)


def client_behind(send_lag_p99_s: float, mean_gap_s: float) -> bool:
    """The client's rule for having fallen behind its schedule: send lag p99 above the
    larger of :data:`CLIENT_BEHIND_FLOOR_S` and :data:`CLIENT_BEHIND_GAP_SHARE` of the mean
    scheduled gap. Below it the client reproduced the arrival process well enough for
    its latencies to be the server's; NaN (no lag recorded) is not behind."""
    return send_lag_p99_s > max(CLIENT_BEHIND_FLOOR_S, CLIENT_BEHIND_GAP_SHARE * mean_gap_s)


def summarize(records: Sequence[RequestRecord], started_s: float, finished_s: float, *,
              slo: Slo | None = None) -> Summary:
    """The figures of a load run (vLLM's ``calculate_metrics``, latencies from scheduled
    times; see the module's docstring).

    ``started_s``: the first scheduled send; ``finished_s``: the last response's end (s, the
    records' clock); ``duration_s`` = their difference divides the throughputs.
    Keys: ``{ttft,tpot,itl,e2e}_p{50,95,99}_ms`` over completed requests (ITL pooled over
    all their gaps; NaN where there is no sample), ``request_throughput`` (completed
    requests/s), ``output_throughput`` (output tokens of completed requests/s),
    ``completed``, ``failed``, ``send_lag_p99_ms`` (over all requests), ``duration_s``,
    ``client_behind`` (:func:`client_behind`) and, only with ``slo``, ``goodput``
    (completed requests/s meeting every objective, vLLM's request goodput).
    Percentiles are linear (:func:`pytest_hwopt.core.stats.percentile`, NumPy's default).

    Raises ``ValueError`` for no records or ``finished_s`` <= ``started_s``.
    """
    if not records:
        raise ValueError("a load run with no request")
    duration = finished_s - started_s
    if not duration > 0:
        raise ValueError(f"the run must end after it starts: started {started_s!r} s, "
                         f"finished {finished_s!r} s")
    done = [r for r in records if r.ok]
    samples: dict[str, list[float]] = {
        "ttft": [t for r in done if (t := r.ttft_s) is not None],
        "tpot": [t for r in done if (t := r.tpot_s) is not None],
        "itl": [g for r in done for g in r.itl_s],
        "e2e": [r.e2e_s for r in done],
    }
    out: Summary = {}
    for name in LATENCY_METRICS:
        out.update(_percentiles_ms(name, samples[name]))
    lags = [lag for r in records if (lag := r.send_lag_s) is not None]
    lag_p99 = stats.percentile(lags, 99) if lags else math.nan
    out.update({
        "request_throughput": len(done) / duration,
        "output_throughput": sum(r.output_tokens for r in done) / duration,
        "completed": len(done),
        "failed": len(records) - len(done),
        "send_lag_p99_ms": lag_p99 * 1000.0,
        "duration_s": duration,
        "client_behind": client_behind(lag_p99, mean_scheduled_gap_s(records)),
    })
    if slo is not None:
        out["goodput"] = sum(1 for r in done if slo.met_by(r)) / duration
    return out


def first_error(records: Sequence[RequestRecord]) -> str | None:
    """The error of the failed request with the lowest index, as ``"request <index>:
    <error>"``; None when every request completed."""
    failed = [r for r in records if r.error is not None]
    if not failed:
        return None
    first = min(failed, key=lambda r: r.index)
    return f"request {first.index}: {first.error}"
