"""Load runs as measurements: one round of a serve variant (the HTTP load generator,
:mod:`pytest_hwopt.backends.openai_load`) and one LoadGen test
(:mod:`pytest_hwopt.backends.loadgen`), turned into what the budget kinds read
(:mod:`pytest_hwopt.core.served`).

Imported when a test registers a load, never with the plugin: aiohttp and LoadGen load
only then.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pytest_hwopt.core.served import LoadGenLoad, LoadGenMeasurement, RoundFigures, ServeLoad

if TYPE_CHECKING:
    from pytest_hwopt.backends.openai_load import LoadRun

#: requests sent, all at once and untimed, before a serve variant's first load run: the
#: server loads its model and compiles its kernels on the first requests it gets
WARMUP_REQUESTS: Final = 2


def load_round(load: ServeLoad, index: int) -> RoundFigures:
    """Load run ``index`` (0, 1, ...) of ``load``: the same requests each round, sent on a
    schedule drawn with seed ``load.seed + index``; round 0 warms the server up first
    (:data:`WARMUP_REQUESTS`). Raises ``ServerUnreachable`` naming the URL when nothing
    answers there."""
    from pytest_hwopt.backends.openai_load import run_load
    from pytest_hwopt.core.serving import send_schedule

    if index == 0:
        run_load(load.base_url, prompts=load.prompts,
                 schedule=[0.0] * min(WARMUP_REQUESTS, load.num_requests),
                 max_concurrency=None, max_tokens=load.max_tokens, model=load.model,
                 endpoint=load.endpoint,  # type: ignore[arg-type]  # validated by ServeLoad
                 timeout_s=load.timeout_s)
    schedule = send_schedule(load.num_requests, load.rate, load.burstiness, load.seed + index)
    run = run_load(load.base_url, prompts=load.prompts, schedule=schedule,
                   max_concurrency=load.max_concurrency, max_tokens=load.max_tokens,
                   model=load.model,
                   endpoint=load.endpoint,  # type: ignore[arg-type]  # validated by ServeLoad
                   timeout_s=load.timeout_s)
    return round_figures(run)


def round_figures(run: LoadRun) -> RoundFigures:
    """The figures of one finished load run: per completed request its TTFT, TPOT, ITLs
    and end-to-end time (ms, from its scheduled send time), and the run's summary
    (:func:`pytest_hwopt.core.serving.summarize`; a figure without samples is None)."""
    from pytest_hwopt.core.serving import first_error, summarize

    done = [r for r in run.records if r.ok]
    summary: dict[str, Any] = dict(summarize(run.records, run.started_s, run.finished_s))
    summary = {k: None if isinstance(v, float) and not math.isfinite(v) else v
               for k, v in summary.items()}
    summary["client_cpu_ms_per_request"] = run.client_cpu_s * 1000.0 / len(run.records)
    return RoundFigures(
        ttft_ms=tuple(_ms(r.ttft_s) for r in done),  # None: no content chunk came
        tpot_ms=tuple(_ms(r.tpot_s) for r in done),
        itl_ms=tuple(tuple(g * 1000.0 for g in r.itl_s) for r in done),
        e2e_ms=tuple(r.e2e_s * 1000.0 for r in done),
        tokens=tuple(r.output_tokens for r in done),
        send_lag_ms=tuple(lag * 1000.0 for r in run.records
                          if (lag := r.send_lag_s) is not None),
        failed=len(run.records) - len(done),
        first_error=first_error(run.records),
        duration_s=float(summary["duration_s"]),
        client_behind=bool(summary["client_behind"]),
        summary=summary)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def loadgen_measurement(load: LoadGenLoad, folder: Path) -> LoadGenMeasurement:
    """Run ``load`` under LoadGen, its logs in ``folder``; an exception of the system under
    test is the measurement's ``error`` (naming the sample), not raised."""
    from pytest_hwopt.backends.loadgen import LoadGenSampleError, run_loadgen

    error = ""
    try:
        run = run_loadgen(load.fn, scenario=load.scenario, samples=load.samples,
                          target_qps=load.target_qps, target_latency_ms=load.target_latency_ms,
                          min_duration_s=load.min_duration_s, min_queries=load.min_queries,
                          outdir=folder)
    except LoadGenSampleError as exc:
        error = str(exc)
        if exc.run is None:
            return LoadGenMeasurement(name=load.name, samples_ms=[], rounds_ms=[],
                                      scenario=load.scenario, loadgen_result="INVALID",
                                      error=error, timer="MLPerf LoadGen")
        run = exc.run
    latencies = [float(x) for x in run.latencies_ms]
    percentiles = {key: getattr(run, key) for key in
                   ("median_ms", "p90_ms", "p95_ms", "p97_ms", "p99_ms", "p999_ms",
                    "mean_ms", "min_ms", "max_ms")}
    return LoadGenMeasurement(
        name=load.name, samples_ms=latencies, rounds_ms=[run.median_ms or math.nan],
        timer="MLPerf LoadGen", scenario=run.scenario, loadgen_result=run.loadgen_result,
        invalid_reason=run.reason, error=error, qps=run.qps, percentiles_ms=percentiles,
        loadgen={
            "qps_field": run.qps_field, "queries": run.queries, "samples_count": run.samples,
            "duration_s": run.duration_s, "errors": run.errors,
            "early_stopping": list(run.early_stopping),
            "min_queries_for": {f"p{p:g}": n for p, n in run.min_queries_for.items()},
            "min_queries_source": {f"p{p:g}": s for p, s in run.min_queries_source.items()},
            "loadgen_log_dir": str(folder),
            "target_qps": load.target_qps, "target_latency_ms": load.target_latency_ms,
            "min_duration_s": load.min_duration_s, "min_queries": load.min_queries,
        })
