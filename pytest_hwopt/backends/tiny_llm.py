"""A tiny Llama-style model with random weights, served by ``transformers serve`` on a CPU.

For tests of serving under load that need a real OpenAI-compatible server but no model hub:
:func:`save_tiny_llama` writes a model and a tokenizer (built with the ``tokenizers``
package, no download) to a folder, :func:`serve_command` gives the command line that serves
it. Importing this module imports neither torch, transformers nor tokenizers.

Verified with transformers 5.24.0 (``serving`` extra: fastapi 0.165, uvicorn 0.54), torch
2.13 (CPU), tokenizers 0.23.3, on a 2-vCPU AMD EPYC with ``HF_HUB_OFFLINE=1`` and no network:

- **Command**: ``python -m transformers.cli.transformers serve FOLDER --host 127.0.0.1
  --port PORT --device cpu`` (the ``transformers`` console script runs the same ``main``).
  The positional argument (``force_model``) preloads the model *before* uvicorn starts, so
  the first ``GET /health`` that answers 200 means the model is loaded. ``--host`` defaults
  to ``localhost``, ``--port`` to 8000. ``main`` first checks PyPI for a newer release once
  a day; ``HF_HUB_DISABLE_UPDATE_CHECK=1`` turns that off (:func:`serve_command` sets it,
  with ``HF_HUB_OFFLINE=1``, through ``env``).
- **Model name in requests**: with the positional argument the ``model`` field may be left
  out or must equal that argument *exactly* (the folder as given; another string is a 400
  "Server is pinned to ..."). Without it, ``model`` may be any existing local folder (a path
  is kept as is, a Hub name gets ``@main``), loaded on its first request.
- **Endpoints**: ``GET /health`` (200 ``{"status": "ok"}``; 503 once a continuous-batching
  worker died), ``GET /v1/models``, ``POST /v1/completions`` (prompt string, no chat
  template), ``POST /v1/chat/completions`` (needs the tokenizer's chat template: written
  here), ``POST /v1/responses``. Both completion endpoints stream OpenAI SSE chunks
  (``data: {json}``) with ``"stream": true``. Unknown fields are refused with 422 (so
  ``ignore_eos`` is); ``stream_options`` is accepted and ignored: ``usage``
  (``prompt_tokens``, ``completion_tokens``, ``total_tokens``) comes in any case, in the
  *last* chunk, the one whose choice has ``finish_reason`` (``"length"`` when
  ``max_tokens`` was reached) - not in a separate chunk with empty ``choices`` as OpenAI
  sends it. No ``data: [DONE]`` line follows: the stream ends when the response does.
  One chunk per generated token, except a token that ends inside a UTF-8 character, whose
  bytes come with the next one: count tokens with ``usage.completion_tokens``, not chunks.
  ``/v1/chat/completions`` sends a first chunk with ``delta.role`` and no content.
- **Exactly max_tokens**: the tokenizer has no special tokens and the model's config and
  generation config no ``eos_token_id``, so nothing can end a generation early: every
  completion has ``completion_tokens == max_tokens`` and ``finish_reason == "length"``
  (streamed or not, with or without continuous batching, whose manager logs "eos_token_id
  not set ... Setting to -1 (disabled)"). Without ``max_tokens`` the server generates 1024
  tokens (its floor for the default). Greedy: the saved generation config does not sample,
  and a request's ``temperature`` does not turn sampling on.
- **Continuous batching** (``--continuous-batching``) works on the CPU. It starts on the
  first request, not at start-up. Its paged KV cache is sized from the free memory unless
  ``--cb-num-blocks``/``--cb-max-batch-tokens`` are given: 6.5 GB resident and 15 s for
  the first request here, hence :data:`CB_DEFAULTS` (about 0.5 GB resident, first request
  0.2-0.3 s). A server exits 0.6-0.7 s after SIGTERM (once over 2 s with continuous
  batching, just after a burst of requests).
- **Timings** (the defaults of :func:`save_tiny_llama`: 1024-token vocabulary, hidden size
  64, 2 layers, 0.2 M parameters; ``OMP_NUM_THREADS=1``; AMD EPYC, 2 vCPUs, with other
  benchmarks running at a higher priority, so upper bounds; medians):

  - writing the model: 0.15 s (plus about 7 s to import torch and transformers);
  - start-up, command to the first 200 on ``/health``: 10-13 s (imports, mostly);
  - sequential: a streamed 32-token completion 180 ms (100 ms at best), 64 tokens 290 ms
    (210 ms at best), first chunk 10-20 ms; 64 tokens not streamed 240 ms (120 ms at best).
    ``model.generate`` alone spends at least 1.3-1.5 ms per step here (64 tokens in-process:
    95 ms at hidden size 64 and 1 layer, 200 ms at 128 and 2, 515 ms at 256 and 4), so no
    model gets a 64-token completion through the server into tens of ms on this CPU; two
    torch threads on two busy cores made generating 9 times slower, hence one;
  - 64-token streamed completions sent at once, sequential vs continuous batching: 4 in
    1.06 s vs 0.53 s, 8 in 2.45 s vs 0.73-0.82 s, 16 in 4.48 s vs 1.13-1.26 s; a single one
    is slower with it (320-370 ms vs 290 ms). The server's CPU time per 64-token
    completion (less disturbed by the other load): 230 ms alone and 280 ms eight at a time
    sequentially; 350 ms alone and 56 ms eight at a time with continuous batching.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

#: the byte-level alphabet has 256 symbols: the vocabulary needs them all, plus merges
MIN_VOCAB: Final = 257
#: attention heads of the tiny model (the hidden size must be a multiple of 2 * HEADS)
HEADS: Final = 4
#: a chat template for ``/v1/chat/completions`` (role: content lines, then ``assistant:``)
CHAT_TEMPLATE: Final = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
#: the longest merged token, in bytes (keeps tokens word-sized)
_MAX_TOKEN_BYTES: Final = 6

#: the KV cache of continuous batching, unless ``extra`` sizes it: 64 pages of 256 tokens
#: and 512 tokens per step (by default the cache takes most of the free memory: 6.5 GB)
CB_DEFAULTS: Final = {"--cb-num-blocks": "64", "--cb-max-batch-tokens": "512"}


def save_tiny_llama(folder: Path, *, vocab_size: int = 1024, hidden_size: int = 64,
                    layers: int = 2, seed: int = 0) -> Path:
    """Write a servable Llama-style causal LM with random weights to ``folder`` (created if
    missing) and return it.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``
    (float32), ``tokenizer.json``, ``tokenizer_config.json`` and ``chat_template.jinja``:
    what ``from_pretrained`` and ``transformers serve`` read. The tokenizer is a byte-level
    BPE of exactly ``vocab_size`` tokens whose merges are drawn from ``seed`` (any text
    encodes; every id decodes). There is no end-of-sequence, padding or beginning token, so
    a generation always runs to its ``max_new_tokens`` (``max_tokens`` of a request).
    The same arguments give the same files. Takes about 0.2 s.

    ``vocab_size``: tokens (at least 257); ``hidden_size``: model width (a positive multiple
    of 8; the MLP is 4 times as wide); ``layers``: decoder layers (at least 1).
    Raises ``ValueError`` on other sizes, ``ImportError`` without transformers, torch and
    tokenizers.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB:
        raise ValueError(f"save_tiny_llama: vocab_size must be an int >= {MIN_VOCAB} (the 256 "
                         f"byte tokens and at least one merge), got {vocab_size!r}")
    if (isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size <= 0
            or hidden_size % (2 * HEADS)):
        raise ValueError(f"save_tiny_llama: hidden_size must be a positive multiple of "
                         f"{2 * HEADS} ({HEADS} heads of an even size), got {hidden_size!r}")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"save_tiny_llama: layers must be an int >= 1, got {layers!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _save_tokenizer(folder, vocab_size, seed)
    _save_model(folder, vocab_size, hidden_size, layers, seed)
    return folder


def serve_command(folder: Path, *, continuous_batching: bool = False,
                  extra: Sequence[str] = (), threads: int | None = 1) -> list[str]:
    """The command line that serves the model in ``folder`` with ``transformers serve`` on
    the CPU, on 127.0.0.1, with a ``{port}`` placeholder for the port (as the
    ``hwopt_server`` fixture takes it).

    It runs through ``env`` to set ``HF_HUB_OFFLINE=1`` (nothing is fetched from a hub),
    ``HF_HUB_DISABLE_UPDATE_CHECK=1`` and, unless ``threads`` is None, ``OMP_NUM_THREADS``
    (torch's intra-op threads; 1 by default: on a small CPU a second spinning thread costs
    more than it gives to a model this size). The model is preloaded, so requests may leave
    ``model`` out or give ``str(folder)``. ``continuous_batching`` adds
    ``--continuous-batching`` and the cache sizes of :data:`CB_DEFAULTS` that ``extra`` does
    not give; ``extra`` is appended as it is (``--cb-*`` flags, ``--log-level info``...).
    Raises ``ValueError`` when ``threads`` is not None or a positive int, or ``extra`` holds
    a non-string.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"serve_command: threads must be None or an int >= 1, got {threads!r}")
    if isinstance(extra, str) or not all(isinstance(a, str) for a in extra):
        raise ValueError(f"serve_command: extra must be a sequence of strings, got {extra!r}")
    env = ["env", "HF_HUB_OFFLINE=1", "HF_HUB_DISABLE_UPDATE_CHECK=1"]
    if threads is not None:
        env.append(f"OMP_NUM_THREADS={threads}")
    batching = ["--no-continuous-batching"]
    if continuous_batching:
        batching = ["--continuous-batching"]
        for flag, value in CB_DEFAULTS.items():
            if not any(a == flag or a.startswith(flag + "=") for a in extra):
                batching += [flag, value]
    return [*env, sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder),
            "--host", "127.0.0.1", "--port", "{port}", "--device", "cpu", *batching, *extra]


def _merges(vocab_size: int, seed: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary of exactly ``vocab_size`` tokens: the 256 byte symbols,
    then merges of a token drawn from those so far with a byte symbol, each new."""
    from tokenizers import pre_tokenizers

    rng = random.Random(seed)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    tokens = list(alphabet)
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        left, right = rng.choice(tokens), rng.choice(alphabet)
        merged = left + right
        if merged in vocab or len(merged) > _MAX_TOKEN_BYTES:
            continue
        vocab[merged] = len(vocab)
        tokens.append(merged)
        merges.append((left, right))
    return vocab, merges


def _save_tokenizer(folder: Path, vocab_size: int, seed: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _merges(vocab_size, seed)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer,
                            chat_template=CHAT_TEMPLATE).save_pretrained(folder)


def _save_model(folder: Path, vocab_size: int, hidden_size: int, layers: int,
                seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                         intermediate_size=4 * hidden_size, num_hidden_layers=layers,
                         num_attention_heads=HEADS, num_key_value_heads=HEADS,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    generator = torch.random.fork_rng()  # random weights from seed, the caller's RNG kept
    with generator:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=None,
                                               pad_token_id=None)
    bars_were_off = hf_logging.is_progress_bar_enabled() is False
    hf_logging.disable_progress_bar()  # "Writing model shards" on stderr
    try:
        model.save_pretrained(folder)
    finally:
        if not bars_were_off:
            hf_logging.enable_progress_bar()
