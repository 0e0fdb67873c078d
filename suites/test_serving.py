"""Serving under load: a real OpenAI-compatible server (``transformers serve``, a tiny
Llama-style model with random weights, saved to a temporary folder: nothing is
downloaded) at given request rates, and MLPerf LoadGen's Server scenario on an
in-process model.

The lesson's production trade-off, measured: batching raises throughput and adds
latency; a server that takes one request at a time stops gaining throughput once the
offered rate passes its capacity while requests queue and time to first token climbs;
continuous batching serves the same load with several times the throughput. Latency is
measured from each request's scheduled send time (requests that queue are not hidden).

Needs the ``serving`` extra (``pip install 'pytest-hwopt[serving]'``) and, for the LoadGen
test, the ``loadgen`` extra; without them the tests skip with that reason. Budgets sit
below the lowest lower bound that four fresh processes read on the idle 2-core CI machine
kind (AMD EPYC, AVX2; ``pytest suites/test_serving.py --hwopt-report-only``; figures in
the README, "Serving under load").
"""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pytest_hwopt import hwopt

pytestmark = pytest.mark.serving

_MISSING = [m for m in ("aiohttp", "torch", "transformers", "tokenizers", "fastapi", "uvicorn")
            if importlib.util.find_spec(m) is None]
needs_server = pytest.mark.skipif(
    bool(_MISSING), reason=f"serving a model needs {', '.join(_MISSING)}: "
                           "pip install 'pytest-hwopt[serving]'")

PROMPTS = ["The quick brown fox", "Once upon a time", "In a hole in the ground",
           "It was a bright cold day"]
#: tokens per completion: the tiny model generates exactly this many (it has no EOS)
TOKENS = 32
#: offered rates of the sweep (requests/s): below, near and above the one-at-a-time
#: server's capacity (a 32-token completion takes about 0.1-0.2 s alone on this CPU)
RATES = (2, 4, 8, 16)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    from pytest_hwopt.backends.tiny_llm import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@needs_server
# throughput at the highest rate over the lowest: it rises with the offered load ...
@hwopt.speedup(min=1.5, vs=f"rate {RATES[0]}", of=f"rate {RATES[-1]}",
               metric="throughput")  # read 1.85-2.10x, lower bounds 1.53-1.89x
# ... while requests queue: p95 TTFT at the highest rate over the lowest (a "speedup" of the
# low rate's TTFT over the high rate's)
@hwopt.speedup(min=8.0, vs=f"rate {RATES[-1]}", of=f"rate {RATES[0]}",
               metric="ttft")  # read 20.7-32.0x, lower bounds 9.0-18.9x
def test_rate_sweep(hwopt_server, hwopt_bench, tiny_model):
    """One server that answers one request at a time, offered 2 to 16 requests/s: the
    HTML report shows the sweep (throughput rises, then flattens; TTFT climbs)."""
    from pytest_hwopt.backends.tiny_llm import serve_command

    url = hwopt_server(serve_command(tiny_model))
    for rate in RATES:
        hwopt_bench.serve(f"rate {rate}", url, prompts=PROMPTS, num_requests=8, rate=rate,
                          max_tokens=TOKENS)
    results = hwopt_bench.run()
    low, high = results[f"rate {RATES[0]}"], results[f"rate {RATES[-1]}"]
    hwopt_bench.note("capacity tokens/s (highest rate)", round(high.output_throughput, 1))
    hwopt_bench.note("TTFT p95 ms low -> high rate",
                     f"{low.ttft_p95_ms:.0f} -> {high.ttft_p95_ms:.0f}")


@needs_server
# read 1.87-2.23x, lower bounds 1.46-1.80x
@hwopt.speedup(min=1.4, vs="one at a time", of="continuous batching", metric="throughput")
# end-to-end latency: read 2.31-3.75x, lower bounds 1.85-2.49x
@hwopt.speedup(min=1.6, vs="one at a time", of="continuous batching")
@hwopt.failures(max=0)
def test_continuous_batching(hwopt_server, hwopt_bench, tiny_model):
    """The same load (16 requests at 16 requests/s, above what one-at-a-time serving
    sustains) against a server without and with continuous batching."""
    from pytest_hwopt.backends.tiny_llm import serve_command

    plain = hwopt_server(serve_command(tiny_model))
    batched = hwopt_server(serve_command(tiny_model, continuous_batching=True))
    for name, url in (("one at a time", plain), ("continuous batching", batched)):
        hwopt_bench.serve(name, url, prompts=PROMPTS, num_requests=16, rate=16,
                          max_tokens=TOKENS)


@pytest.mark.skipif(importlib.util.find_spec("mlperf_loadgen") is None,
                    reason="MLPerf LoadGen is not installed: pip install 'pytest-hwopt[loadgen]'")
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
@hwopt.latency(p99_ms=10)  # read 1.08-2.03 ms
@hwopt.throughput(min=190)  # read 197.4-197.9 queries/s
def test_loadgen_server_scenario(hwopt_bench):
    """A small MLP as MLPerf LoadGen's system under test in the Server scenario: queries
    at 200/s (Poisson, LoadGen's schedule) for 3 s; LoadGen judges the run and reports the
    percentiles (p99 within 10 ms: LoadGen's own latency bound is 100 ms)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).eval()
    samples = [torch.randn(1, 64) for _ in range(64)]

    def answer(sample):
        with torch.inference_mode():
            return model(sample)

    hwopt_bench.loadgen("mlp", answer, scenario="Server", samples=samples, target_qps=200,
                        min_duration_s=3)
