"""What the per-token timing of ``hwopt_bench.generate()`` costs, and how long the
generation suite takes.

1. **Per-token timing against plain generate**, side by side in one process: the same
   tiny Llama (built from a config, random weights) and prompt, greedy, exactly N new
   tokens; ``plain`` is ``model.generate(...)`` alone, ``timed`` the plugin's call
   (a streamer reading the host clock at each token, its readings turned into TTFT,
   TPOT and ITL). Calls alternate (plain, timed, plain, ...) so drift and neighbours
   hit both alike; the figure is the ratio of the medians of their end-to-end times,
   with the TPOT each one implies ((end-to-end - TTFT) / (N - 1) for the timed call;
   for the plain one, its end-to-end minus the timed call's median TTFT). Target: under
   2% added.
2. **The generation suite's run time** (``--suite``): ``pytest suites -m generation``
   in a fresh process, wall clock. Target: under 60 s on the 2-core CI machine.

    python -m benchmarks.generation_overhead [--calls 200] [--tokens 32] [--suite]

Prints one JSON document (figures, the CPU, library versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any


def _model(hidden: int) -> Any:
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=512, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.train(False)  # eval mode: no dropout
    return model


def overhead(calls: int, tokens: int, prompt: int, hidden: int) -> dict[str, Any]:
    """Plain vs timed generate, alternated; medians of the end-to-end times (ms)."""
    import torch

    from pytest_hwopt.backends.generation import GenerationCall, _streamer_type
    from pytest_hwopt.core.generation import GenerationLog

    torch.set_num_threads(1)
    model = _model(hidden)
    ids = torch.randint(3, 512, (1, prompt), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    settings = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False,
                "num_beams": 1}
    log = GenerationLog("timed")
    timed = GenerationCall("timed", model, inputs, tokens, {}, log,
                           streamer_type=_streamer_type())

    def plain() -> None:
        model.generate(**inputs, **settings)

    for _ in range(5):  # warm-up of both
        plain()
        timed()
    log.clear()
    plain_ms: list[float] = []
    timed_ms: list[float] = []
    clock = time.perf_counter
    for _ in range(calls):
        start = clock()
        plain()
        plain_ms.append((clock() - start) * 1000.0)
        start = clock()
        timed()
        timed_ms.append((clock() - start) * 1000.0)
    ttft = statistics.median(m.ttft_ms for m in log.calls)
    tpot = statistics.median(m.tpot_ms or 0.0 for m in log.calls)
    plain_median, timed_median = statistics.median(plain_ms), statistics.median(timed_ms)
    return {
        "calls_each": calls, "new_tokens": tokens, "prompt_tokens": prompt, "hidden": hidden,
        "plain_e2e_median_ms": plain_median, "timed_e2e_median_ms": timed_median,
        "added_fraction": timed_median / plain_median - 1.0,
        "timed_tpot_median_ms": tpot,
        "plain_tpot_estimate_ms": (plain_median - ttft) / (tokens - 1),
        "timed_ttft_median_ms": ttft,
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def suite_seconds() -> dict[str, Any]:
    """``pytest suites -m generation`` in a fresh process: wall seconds and exit code."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "suites", "-m", "generation", "-q",
                           "-p", "no:randomly"], capture_output=True, text=True)
    tail = done.stdout.strip().splitlines()[-1:] if done.stdout else []
    return {"suite_wall_s": time.perf_counter() - start, "suite_exit_code": done.returncode,
            "suite_last_line": tail[0] if tail else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls of each, alternated")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per call")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    parser.add_argument("--hidden", type=int, default=128, help="the model's width")
    parser.add_argument("--suite", action="store_true",
                        help="also time pytest suites -m generation in a fresh process")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    out: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "load_before": os.getloadavg(),
    }
    out.update(overhead(args.calls, args.tokens, args.prompt, args.hidden))
    if args.suite:
        out.update(suite_seconds())
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
