"""Serving under load, as a user writes it: ``hwopt_server`` starts a server,
``hwopt_bench.serve`` sends a load at it, and TTFT, TPOT, throughput, goodput and failed
requests are budgets. ``hwopt_bench.loadgen`` runs an in-process callable under MLPerf
LoadGen.

Most tests serve a small OpenAI-style stub (aiohttp, a few lines) so that they take
seconds; ``test_serving_a_real_model`` runs the same contract against a real
``transformers serve`` with a tiny random model.
"""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("aiohttp")

#: an OpenAI-style streaming server: ``python stub.py PORT [TOKENS] [MS_PER_TOKEN] [STATUS]``
STUB = r'''
import asyncio, json, sys
from aiohttp import web

port, tokens, ms, status = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
busy = asyncio.Lock()  # one request at a time: a server without batching

async def health(request):
    return web.json_response({"status": "ok"})

async def models(request):
    return web.json_response({"data": [{"id": "stub"}]})

async def complete(request):
    body = await request.json()
    if status != 200:
        return web.json_response({"error": "no such model"}, status=status)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    async with busy:
        n = min(tokens, body["max_tokens"])
        for i in range(n):
            await asyncio.sleep(ms / 1000)
            last = i == n - 1
            doc = {"choices": [{"index": 0, "text": f"t{i} ",
                                "finish_reason": "length" if last else None}]}
            if last:
                doc["usage"] = {"prompt_tokens": 2, "completion_tokens": n, "total_tokens": n + 2}
            await resp.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp

app = web.Application()
app.add_routes([web.get("/health", health), web.get("/v1/models", models),
                web.post("/v1/completions", complete), web.post("/v1/chat/completions", complete)])
web.run_app(app, host="127.0.0.1", port=port, print=None)
'''

HEADER = '''
import math
import sys

from pytest_hwopt import hwopt


def stub(hwopt_server, tokens=8, ms=2, status=200):
    return hwopt_server([sys.executable, "stub.py", "{port}", str(tokens), str(ms), str(status)])
'''


@pytest.fixture
def served(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".py", stub=STUB)
    return pytester


def test_budgets_on_a_served_load(served: pytest.Pytester) -> None:
    served.makepyfile(HEADER + '''
@hwopt.ttft(p50_ms=500)
@hwopt.tpot(p50_ms=100)
@hwopt.throughput(min=10)
@hwopt.goodput(min=1, ttft_ms=1000)
def test_serve(hwopt_server, hwopt_bench):
    url = stub(hwopt_server)
    hwopt_bench.serve("stub", url, prompts=["hello", "world"], num_requests=16, rate=100,
                      max_tokens=8)
''')
    result = served.runpytest("--hwopt-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    doc = json.loads((served.path / "out.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_hwopt.results.schema import json_schema

    jsonschema.Draft202012Validator(json_schema()).validate(doc)  # the shipped format
    (res,) = doc["results"]
    for key in ("ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p95_ms",
                "tpot_p99_ms", "itl_p50_ms", "itl_p95_ms", "itl_p99_ms", "e2e_p50_ms",
                "e2e_p95_ms", "e2e_p99_ms", "request_throughput", "output_throughput",
                "completed", "failed", "send_lag_p99_ms", "goodput"):
        assert key in res, key
    assert res["completed"] == 16 and res["failed"] == 0
    assert res["output_tokens"] == 8  # from the stream's usage
    assert res["load"]["rate"] == 100 and res["load"]["url"].endswith("/v1/completions")
    kinds = {c["kind"]: c["status"] for c in doc["checks"]}
    assert kinds == {"ttft": "passed", "tpot": "passed", "throughput": "passed",
                     "goodput": "passed", "failures": "passed"}


def test_a_server_that_returns_errors_fails_with_the_first_error(served: pytest.Pytester
                                                                  ) -> None:
    served.makepyfile(HEADER + '''
def test_serve(hwopt_server, hwopt_bench):
    url = stub(hwopt_server, status=404)
    hwopt_bench.serve("stub", url, prompts=["hi"], num_requests=4)
''')
    result = served.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*requests of stub: 4 of 4 requests failed (at most 0 "
                                 "allowed); first: request 0: HTTP 404*no such model*"])


def test_failed_requests_fail_with_timing_off_too(served: pytest.Pytester) -> None:
    """--hwopt-disable sends one request per serve variant: its failure still counts."""
    served.makepyfile(HEADER + '''
def test_serve(hwopt_server, hwopt_bench):
    url = stub(hwopt_server, status=404)
    hwopt_bench.serve("stub", url, prompts=["hi"], num_requests=4)
''')
    result = served.runpytest("-p", "no:cacheprovider", "--hwopt-disable")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*requests of stub: 1 of 1 requests failed*HTTP 404*"])


def test_failures_can_be_allowed(served: pytest.Pytester) -> None:
    served.makepyfile(HEADER + '''
@hwopt.failures(max=4)
def test_serve(hwopt_server, hwopt_bench):
    url = stub(hwopt_server, status=500)
    hwopt_bench.serve("stub", url, prompts=["hi"], num_requests=4)
''')
    served.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_url_with_nothing_behind_it_is_a_clear_error_at_once(served: pytest.Pytester
                                                               ) -> None:
    served.makepyfile(HEADER + '''
def test_serve(hwopt_bench):
    hwopt_bench.serve("nothing", "http://127.0.0.1:9", prompts=["hi"], num_requests=4)
''')
    result = served.runpytest("-p", "no:cacheprovider", "--durations=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no server answers at http://127.0.0.1:9*"])


def test_continuous_batching_as_a_throughput_speedup(served: pytest.Pytester) -> None:
    """Two servers, one five times as fast per token: at least three paired load runs
    each (A B, B A, A B) decide the throughput ratio."""
    served.makepyfile(HEADER + '''
@hwopt.speedup(min=1.3, vs="slow", metric="throughput")
def test_serve(hwopt_server, hwopt_bench):
    fast, slow = stub(hwopt_server, ms=2), stub(hwopt_server, ms=10)
    for name, url in (("fast", fast), ("slow", slow)):
        hwopt_bench.serve(name, url, prompts=["hi"], num_requests=8, max_tokens=8)
''')
    result = served.runpytest("--hwopt-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    doc = json.loads((served.path / "out.json").read_text())
    (check,) = [c for c in doc["checks"] if c["kind"] == "speedup"]
    assert check["metric"] == "throughput" and check["status"] == "passed"
    assert 1.5 < check["measured"] < 8
    assert all(len(r["load_rounds"]) >= 3 for r in doc["results"])


def test_a_throughput_speedup_of_plain_variants_is_an_error(pytester: pytest.Pytester
                                                            ) -> None:
    pytester.makepyfile('''
from pytest_hwopt import hwopt

@hwopt.speedup(min=1.3, vs="b", metric="throughput")
def test_plain(hwopt_bench):
    hwopt_bench.measure("a", lambda: sum(range(100)))
    hwopt_bench.measure("b", lambda: sum(range(1000)))
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*variant 'a' is not a serve variant*"])


def test_bad_serve_arguments_name_the_argument(served: pytest.Pytester) -> None:
    served.makepyfile(HEADER + '''
import pytest

def test_serve(hwopt_bench):
    with pytest.raises(ValueError, match="rate must be a positive number"):
        hwopt_bench.serve("s", "http://127.0.0.1:9", prompts=["hi"], num_requests=4, rate=0)
    with pytest.raises(ValueError, match="endpoint must be one of 'completions', 'chat'"):
        hwopt_bench.serve("s", "http://127.0.0.1:9", prompts=["hi"], num_requests=4,
                          endpoint="responses")
    with pytest.raises(TypeError, match="prompts must be a non-empty list"):
        hwopt_bench.serve("s", "http://127.0.0.1:9", prompts="hi", num_requests=4)
''')
    served.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_rate_sweep_is_a_table_and_a_plot_in_the_report(served: pytest.Pytester) -> None:
    pytest.importorskip("plotly")
    served.makepyfile(HEADER + '''
def test_sweep(hwopt_server, hwopt_bench):
    url = stub(hwopt_server, ms=1)
    for rate in (50, 100, 200):
        hwopt_bench.serve(f"rate {rate}", url, prompts=["hi"], num_requests=8, rate=rate,
                          max_tokens=4)
''')
    result = served.runpytest("--hwopt-html=report.html", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    page = (served.path / "report.html").read_text()
    assert "Serving under load" in page and "offered rate (requests\\u002fs)" in page
    assert "rate 200" in page


def test_loadgen_server_scenario(pytester: pytest.Pytester) -> None:
    pytest.importorskip("mlperf_loadgen")
    pytester.makepyfile('''
import time
from pytest_hwopt import hwopt

@hwopt.latency(p99_ms=200)
@hwopt.throughput(min=5)
def test_loadgen(hwopt_bench):
    hwopt_bench.loadgen("sleep", lambda sample: time.sleep(0.001), scenario="Server",
                        samples=list(range(16)), target_qps=50, min_duration_s=1,
                        min_queries=64)
''')
    result = pytester.runpytest("--hwopt-json=out.json", "-p", "no:cacheprovider")
    doc = json.loads((pytester.path / "out.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_hwopt.results.schema import json_schema

    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    (res,) = doc["results"]
    assert res["loadgen_result"] in ("VALID", "INVALID") and res["scenario"] == "Server"
    assert res["p99_ms"] is not None and res["qps"] > 0
    statuses = {c["kind"]: c["status"] for c in doc["checks"]}
    if res["loadgen_result"] == "VALID":
        result.assert_outcomes(passed=1)
        assert statuses == {"latency": "passed", "throughput": "passed", "failures": "passed"}
    else:  # too few queries for LoadGen's early stopping, say: every check fails, with why
        result.assert_outcomes(failed=1)
        assert set(statuses.values()) == {"failed"}
        result.stdout.fnmatch_lines(["*LoadGen run of sleep: INVALID*"])


def test_loadgen_fn_that_raises_fails_naming_the_sample(pytester: pytest.Pytester) -> None:
    pytest.importorskip("mlperf_loadgen")
    pytester.makepyfile('''
def answer(sample):
    if sample == 3:
        raise ValueError("bad sample")

def test_loadgen(hwopt_bench):
    hwopt_bench.loadgen("broken", answer, scenario="SingleStream", samples=list(range(8)),
                        min_duration_s=0.2, min_queries=16)
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fn raised on samples[[]3[]]: ValueError: bad sample*"])


def _serving_missing() -> list[str]:
    import importlib.util

    return [m for m in ("torch", "transformers", "tokenizers", "fastapi", "uvicorn", "aiohttp")
            if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(_serving_missing()),
                    reason=f"starts a real `transformers serve`: needs {_serving_missing()}")
def test_serving_a_real_model(pytester: pytest.Pytester) -> None:
    """The contract against a real ``transformers serve`` (about 30 s on 2 cores): a load
    with budgets, a request the server refuses, and a server that fails to start."""
    pytester.makepyfile('''
from pytest_hwopt import hwopt
from pytest_hwopt.backends.tiny_llm import save_tiny_llama, serve_command


@hwopt.ttft(p50_ms=5000, of="tiny")
@hwopt.throughput(min=1, of="tiny")
def test_load(hwopt_server, hwopt_bench, tmp_path):
    url = hwopt_server(serve_command(save_tiny_llama(tmp_path / "tiny")))
    hwopt_bench.serve("tiny", url, prompts=["the cat", "a dog"], num_requests=6, rate=20,
                      max_tokens=8)
    hwopt_bench.serve("wrong model", url, prompts=["x"], num_requests=2, max_tokens=8,
                      model="no/such-model")


def test_does_not_start(hwopt_server, tmp_path):
    hwopt_server(serve_command(tmp_path / "missing"), timeout_s=60)
''')
    result = pytester.runpytest("--hwopt-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    doc = json.loads((pytester.path / "out.json").read_text())
    tiny = [r for r in doc["results"] if r["variant"] == "tiny"][0]
    assert tiny["completed"] == 6 and tiny["output_tokens"] == 8
    assert math.isfinite(tiny["ttft_p95_ms"])
    checks = {(c["variant"], c["kind"]): c for c in doc["checks"]}
    assert checks[("tiny", "ttft")]["status"] == "passed"
    assert checks[("tiny", "failures")]["status"] == "passed"
    assert checks[("wrong model", "failures")]["status"] == "failed"
    assert "HTTP 400" in checks[("wrong model", "failures")]["message"]
    result.stdout.fnmatch_lines(["*test_does_not_start*", "*exited*"])
