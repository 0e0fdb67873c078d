"""LLM generation as budgets on real Hugging Face architectures: TTFT (the prefill) and
TPOT (the decode) of greedy ``generate`` calls, on tiny Llama- and GPT-2-style models built
from configs with random weights (nothing is downloaded).

Needs the ``llm`` extra (``pip install 'pytest-hwopt[llm]'``); without ``transformers`` the
module is skipped with that reason.

Budgets sit about 20% below the lowest ratio that four fresh processes read on the quiet
2-core CI machine kind (AMD EPYC, AVX2, no AVX-512; ``pytest suites/test_generation.py
--hwopt-report-only``, figures in the README); the other figures are reported as notes.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # configs only: never reach the Hub
torch = pytest.importorskip("torch")
transformers = pytest.importorskip(
    "transformers", reason="the generation suite needs transformers: "
                           "pip install 'pytest-hwopt[llm]'")

from pytest_hwopt import hwopt  # noqa: E402

pytestmark = pytest.mark.generation

VOCAB = 512


def llama(attn: str = "sdpa"):
    """A 2-layer Llama (grouped-query attention, RoPE, SwiGLU), 128 wide."""
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=0, eos_token_id=1, pad_token_id=2)
    config._attn_implementation = attn
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def gpt2():
    """A 2-layer GPT-2 (learned positions, fused QKV, GELU MLP), 128 wide."""
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=4,
                                     n_positions=1024, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


def prompt(length: int, batch: int = 1):
    ids = torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))
    return ids, torch.ones_like(ids)


@hwopt.speedup(min=1.1, vs="recompute-32", of="dynamic-32", metric="tpot")  # read 1.26-1.49x
@hwopt.accuracy(vs="recompute-32", of="dynamic-32")
@hwopt.accuracy(vs="recompute-32", of="static-32")
def test_kv_cache_tpot(hwopt_bench):
    """No cache vs the dynamic and the static cache: identical greedy tokens; the cache cuts
    the time per output token, and more the longer the generation."""
    model = llama()
    ids, mask = prompt(32)
    for n in (8, 32):
        hwopt_bench.generate(f"recompute-{n}", model, ids, attention_mask=mask,
                             max_new_tokens=n, use_cache=False)
        hwopt_bench.generate(f"dynamic-{n}", model, ids, attention_mask=mask, max_new_tokens=n)
    hwopt_bench.generate("static-32", model, ids, attention_mask=mask, max_new_tokens=32,
                         cache_implementation="static")
    r = hwopt_bench.run()
    for n in (8, 32):
        gain = r[f"recompute-{n}"].tpot_p50_ms / r[f"dynamic-{n}"].tpot_p50_ms
        hwopt_bench.note(f"tpot_gain_at_{n}_tokens", gain)
    hwopt_bench.note("static_vs_dynamic_tpot",
                     r["dynamic-32"].tpot_p50_ms / r["static-32"].tpot_p50_ms)


@hwopt.speedup(min=2.5, vs="eager", of="sdpa", metric="ttft")  # read 3.10-4.03x
@hwopt.accuracy(vs="eager", of="sdpa")
def test_sdpa_vs_eager_attention_ttft(hwopt_bench):
    """A 1024-token prompt: SDPA's fused kernel against eager attention's explicit scores
    matrix, read on the prefill (TTFT)."""
    eager, sdpa = llama("eager"), llama("sdpa")
    ids, mask = prompt(1024)
    hwopt_bench.generate("eager", eager, ids, attention_mask=mask, max_new_tokens=2)
    hwopt_bench.generate("sdpa", sdpa, ids, attention_mask=mask, max_new_tokens=2)
    r = hwopt_bench.run()
    # which kernels ran, from the profiler (asking for SDPA does not prove a fused kernel)
    assert r["eager"].extra["attention_backends"] == ["eager"]
    assert r["sdpa"].extra["attention_backends"], "an SDPA backend ran"
    assert "eager" not in r["sdpa"].extra["attention_backends"]
    hwopt_bench.note("ttft_eager_over_sdpa", r["eager"].ttft_p50_ms / r["sdpa"].ttft_p50_ms)


@hwopt.speedup(min=2.5, vs="cached-512", of="cached-64", metric="ttft")  # read 3.03-3.41x
# without a cache each new token recomputes the whole context: TPOT grows with the prompt
@hwopt.speedup(min=2.5, vs="recompute-512", of="recompute-64", metric="tpot")  # 3.96-4.45x
def test_prompt_length_scaling(hwopt_bench):
    """TTFT grows with the prompt; with a cache TPOT stays nearly flat, without one it grows
    with the context it recomputes."""
    model = gpt2()
    for length in (64, 512):
        ids, mask = prompt(length)
        hwopt_bench.generate(f"cached-{length}", model, ids, attention_mask=mask,
                             max_new_tokens=8)
        hwopt_bench.generate(f"recompute-{length}", model, ids, attention_mask=mask,
                             max_new_tokens=8, use_cache=False)
    r = hwopt_bench.run()
    cached = r["cached-512"].tpot_p50_ms / r["cached-64"].tpot_p50_ms
    recompute = r["recompute-512"].tpot_p50_ms / r["recompute-64"].tpot_p50_ms
    hwopt_bench.note("ttft_512_over_64", r["cached-512"].ttft_p50_ms / r["cached-64"].ttft_p50_ms)
    hwopt_bench.note("cached_tpot_512_over_64", cached)
    hwopt_bench.note("recompute_tpot_512_over_64", recompute)


def test_batch_tokens_per_second_vs_latency(hwopt_bench):
    """Batching: more new tokens per second over the batch, a longer time per output token
    for each sequence (the throughput-latency trade-off). Reported, not budgeted: on this
    overhead-bound model the TPOT ratio read 1.0-2.8x between fresh processes on a busy
    machine, too close to 1 for a direction budget."""
    model = gpt2()
    for batch in (1, 8):
        ids, mask = prompt(64, batch)
        hwopt_bench.generate(f"batch-{batch}", model, ids, attention_mask=mask,
                             max_new_tokens=16)
    r = hwopt_bench.run()
    hwopt_bench.note("tokens_per_s_batch_1", r["batch-1"].tokens_per_s)
    hwopt_bench.note("tokens_per_s_batch_8", r["batch-8"].tokens_per_s)
    hwopt_bench.note("throughput_gain", r["batch-8"].tokens_per_s / r["batch-1"].tokens_per_s)
    hwopt_bench.note("tpot_batch_8_over_1", r["batch-8"].tpot_p50_ms / r["batch-1"].tpot_p50_ms)


@hwopt.requires(device="cuda")
@hwopt.speedup(min={"cuda": 1.5}, vs="static", of="static-compiled", metric="tpot")
@hwopt.accuracy(vs="static", of="static-compiled")
def test_compiled_static_cache_decode_cuda(hwopt_bench):
    """On a GPU, a static cache lets ``generate`` compile the decoding step (CUDA graphs)."""
    model = llama()
    ids, mask = prompt(64)
    hwopt_bench.generate("static", model, ids, attention_mask=mask, max_new_tokens=64,
                         cache_implementation="static", disable_compile=True)
    hwopt_bench.generate("static-compiled", model, ids, attention_mask=mask,
                         max_new_tokens=64, cache_implementation="static")
