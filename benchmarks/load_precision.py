"""How precisely the load generator keeps its send schedule, and what it costs.

A minimal OpenAI-style server (aiohttp.web) runs in a separate process and answers every
streamed completion at once: one content chunk, a final chunk with usage, ``[DONE]``.
:func:`pytest_hwopt.backends.openai_load.run_load` sends Poisson schedules to it at each
rate (``--rates``, requests/s; ``--seconds`` of schedule, at most ``--max-requests``), after
a short warm-up run. Per rate:

- **send lag** (ms, p50 / p99 / max): when the client started each request minus its
  scheduled time, the client's own lateness (``RequestRecord.send_lag_s``). Target: p99
  at most 1 ms at 200 requests/s on a 2-core machine;
- **write lag** (ms, p50 / p99 / max): when aiohttp had written the request's headers
  minus its scheduled time (adds the client's per-request work and, for a fresh
  connection, the TCP connect);
- **client CPU per request** (ms): the client process's CPU time over the run
  (``time.process_time``) / requests;
- completed / failed requests, TTFT p50 / p99 (ms) against the instant server, and
  whether :func:`pytest_hwopt.core.serving.summarize` judged the client behind;
- the sends later than 1 ms, and how many of them were due within 2 ms of the previous
  send (which the loop was still issuing: building and writing a request is one step).

    python -m benchmarks.load_precision [--out benchmarks/results/load-precision.json]

Prints one JSON document (figures, the CPU, library versions); ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_hwopt.core import stats
from pytest_hwopt.core.serving import send_schedule

RATES = (50.0, 200.0, 500.0)
LATE_S = 0.001  # a send later than this counts as late (the target's p99)
CLOSE_S = 0.002  # a send due this soon after the previous one is a close pair
CHUNK = (b'data: {"object": "text_completion", "choices": [{"index": 0, "text": "hi", '
         b'"finish_reason": null}]}\n\n')
FINAL = (b'data: {"object": "text_completion", "choices": [{"index": 0, "text": "", '
         b'"finish_reason": "length"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, '
         b'"total_tokens": 2}}\n\ndata: [DONE]\n\n')


def serve() -> None:
    """The instant server: print its port, then answer until stdin closes."""
    from aiohttp import web

    async def completion(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(CHUNK + FINAL)
        await resp.write_eof()
        return resp

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "instant"}]})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", completion)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        print(runner.addresses[0][1], flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await runner.cleanup()

    asyncio.run(main())


def _ms(samples: Sequence[float]) -> dict[str, float]:
    if not samples:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": round(stats.percentile(samples, 50) * 1e3, 4),
            "p99": round(stats.percentile(samples, 99) * 1e3, 4),
            "max": round(max(samples) * 1e3, 4)}


def measure(url: str, rate: float, requests: int, seed: int) -> dict[str, Any]:
    """One Poisson run at ``rate`` requests/s against ``url``: its figures."""
    from pytest_hwopt.backends.openai_load import run_load

    schedule = send_schedule(requests, rate, 1.0, seed)
    run = run_load(url, prompts=["hello"], schedule=schedule, max_tokens=1, model="instant",
                   timeout_s=30.0)
    summary = run.summary()
    lags = [lag for r in run.records if (lag := r.send_lag_s) is not None]
    writes = [r.sent_s - r.scheduled_s for r in run.records if r.sent_s is not None]
    # where lateness comes from: a send due while the previous one is still being issued
    # (aiohttp builds and writes a request in one step of the loop) waits for it
    in_order = sorted(run.records, key=lambda r: r.scheduled_s)
    late = [(prev, r) for prev, r in zip(in_order, in_order[1:])
            if r.send_lag_s is not None and r.send_lag_s > LATE_S]
    return {
        "rate_per_s": rate, "requests": requests, "schedule_s": round(schedule[-1], 3),
        "completed": summary["completed"], "failed": summary["failed"],
        "send_lag_ms": _ms(lags), "write_lag_ms": _ms(writes),
        "client_cpu_ms_per_request": round(run.client_cpu_s / requests * 1e3, 4),
        "client_cpu_share": round(run.client_cpu_s / float(summary["duration_s"]), 3),
        "ttft_ms": {"p50": round(float(summary["ttft_p50_ms"]), 3),
                    "p99": round(float(summary["ttft_p99_ms"]), 3)},
        "client_behind": summary["client_behind"],
        "late_over_1ms": len(late),
        "late_after_a_send_due_within_2ms": sum(
            1 for prev, r in late if r.scheduled_s - prev.scheduled_s < CLOSE_S),
        "sends_due_within_2ms_of_the_previous": sum(
            1 for prev, r in zip(in_order, in_order[1:])
            if r.scheduled_s - prev.scheduled_s < CLOSE_S),
        "request_throughput": round(float(summary["request_throughput"]), 2),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """The machine and the libraries."""
    import aiohttp
    import numpy

    return {"cpu": _cpu_model(), "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "loadavg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "aiohttp": aiohttp.__version__, "numpy": numpy.__version__,
            "platform": platform.platform()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.load_precision", "--serve"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        measure(url, 100.0, 100, args.seed + 1000)  # warm-up: imports, connections, caches
        t0 = time.time()
        runs = [measure(url, rate, min(args.max_requests, max(1, round(rate * args.seconds))),
                        args.seed) for rate in args.rates]
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    doc = {"benchmark": "load_precision",
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
           "target": "send lag p99 <= 1 ms at 200 requests/s on 2 cores",
           "runs": runs, "environment": environment()}
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
