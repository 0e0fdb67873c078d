"""The generation path on a GPU: per-token CUDA events, one synchronisation per call.

A section of the GPU check (``gpu_record``); skips with what was found where there is no
usable CUDA device or no ``transformers`` (``pip install 'pytest-hwopt[llm]'``).
"""

from __future__ import annotations

import importlib.util
import time
from types import ModuleType

import pytest
from gpu_check import Section


@pytest.mark.gpu_check(min_s=30.0)
def test_generation_token_events(gpu_record: Section, cuda: ModuleType) -> None:
    """Greedy generate on a tiny Llama with a CUDA event per token: exactly max_new_tokens
    readings, TTFT and ITLs positive, and the events' end-to-end time close to the host
    clock's around a synchronised call."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed: pip install 'pytest-hwopt[llm]'")
    import transformers

    from pytest_hwopt.backends.generation import GenerationCall, _with_processor
    from pytest_hwopt.core.generation import GenerationLog

    torch = cuda
    config = transformers.LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=0, eos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).cuda().eval()
    ids = torch.randint(3, 512, (1, 64), device="cuda")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    n = 32
    log = GenerationLog("cuda")
    call = GenerationCall("cuda", model, inputs, n, {}, log, cuda=torch.cuda,
                          processors=_with_processor)
    call()  # warm-up
    host_ms = []
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = call()
        torch.cuda.synchronize()
        host_ms.append((time.perf_counter() - start) * 1000.0)
    timed = log.calls[1:]
    e2e = sorted(m.e2e_ms for m in timed)[2]
    host = sorted(host_ms)[2]
    gpu_record(model="Llama 4 x 256, prompt 64, 32 new tokens", ttft_ms=timed[2].ttft_ms,
               tpot_ms=timed[2].tpot_ms, e2e_events_ms=e2e, e2e_host_ms=host,
               summary=f"TTFT {timed[2].ttft_ms:.2f} ms, TPOT {timed[2].tpot_ms:.3f} ms, "
                       f"events {e2e:.2f} ms vs host {host:.2f} ms end to end")
    gpu_record.check("one reading per new token", all(m.tokens == n for m in timed)
                     and tuple(out.shape) == (1, n))
    gpu_record.check("TTFT and every ITL positive",
                     all(m.ttft_ms > 0 and min(m.itl_ms) >= 0 for m in timed))
    gpu_record.check("events' end-to-end time within 20% (+0.5 ms) of the synchronised host "
                     "clock's", abs(e2e - host) <= 0.2 * host + 0.5, f"{e2e:.3f} vs {host:.3f}")
