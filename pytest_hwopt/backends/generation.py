"""The generation path: ``hwopt_bench.generate()`` on a Hugging Face ``transformers`` model.

Each call is one greedy ``model.generate(...)`` forced to exactly ``max_new_tokens`` new
tokens (``min_new_tokens`` as well, so an end-of-sequence token cannot stop it early),
with the time of every new token recorded:

- **CPU**: the host clock (``time.perf_counter``), read by a streamer. ``generate`` hands a
  streamer the prompt first (``streamer.put(input_ids.cpu())`` before the decoding loop),
  then each step's new tokens (``StopCheck.__call__``: ``streamer.put(tokens.cpu())``),
  then calls ``streamer.end()`` (``transformers/generation/utils.py``, 5.x). The first
  ``put`` is skipped; each later one is one token's reading.
- **CUDA**: a CUDA event per token, recorded on the current stream by a logits processor,
  which ``generate`` calls once per step right after that step's forward pass (where
  optimum-benchmark's per-token tracker records its events, ``optimum_benchmark/trackers/
  latency.py``), between an event before the call and one after it; one synchronisation
  per call, on the last event. A streamer would copy every token to the host, a
  synchronisation per token.

The readings become TTFT, TPOT and ITL in :mod:`pytest_hwopt.core.generation`.
Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from pytest_hwopt.core.generation import (
    GenerationLog,
    GenerationSource,
    attention_backends,
    attention_ops,
    call_metrics,
)
from pytest_hwopt.core.measurement import MeasurementExtra

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device

#: generate() settings this path sets itself: each call is greedy, exactly max_new_tokens
FORCED: Final = ("max_new_tokens", "min_new_tokens", "do_sample", "num_beams", "streamer",
                 "max_length", "min_length", "num_return_sequences")


class CudaEvent(Protocol):
    """A CUDA event as ``torch.cuda.Event(enable_timing=True)`` makes it."""

    def record(self) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end: Any, /) -> float: ...


class CudaModule(Protocol):
    """What the CUDA timing uses of ``torch.cuda``."""

    def Event(self, *, enable_timing: bool) -> CudaEvent: ...


class GenerationError(ValueError):
    """A generation variant that cannot be measured as asked; the message says why."""


def check_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse ``generate`` settings that contradict greedy decoding of exactly
    ``max_new_tokens`` tokens (:data:`FORCED`), naming them. Raises :class:`GenerationError`."""
    where = f"hwopt_bench.generate({name!r})"
    for key in ("max_new_tokens", "min_new_tokens", "max_length", "min_length", "streamer"):
        if key in kwargs:
            raise GenerationError(f"{where}: {key}= is set by the plugin (each call generates "
                                  "exactly max_new_tokens tokens, each one timed); remove it")
    if kwargs.get("do_sample"):
        raise GenerationError(f"{where}: do_sample=True: calls are greedy, so that variants "
                              "can be compared token for token")
    for key in ("num_beams", "num_return_sequences"):
        if kwargs.get(key, 1) != 1:
            raise GenerationError(f"{where}: {key}={kwargs[key]!r}: calls are greedy with one "
                                  "sequence per prompt; give 1 or leave it out")


@dataclass
class HostStamps:
    """Streamer that reads ``clock`` at each new token (``generate``'s first ``put`` is the
    prompt, skipped)."""

    clock: Callable[[], float]

    def __post_init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(self.clock())

    def end(self) -> None:
        pass


class EventStamps:
    """Logits processor that records a CUDA event per step and returns the scores as they
    are; :meth:`readings` synchronises once and gives the readings in seconds from ``start``."""

    def __init__(self, cuda: CudaModule) -> None:
        self._cuda = cuda
        self.start = cuda.Event(enable_timing=True)
        self.events: list[CudaEvent] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        event = self._cuda.Event(enable_timing=True)
        event.record()
        self.events.append(event)
        return scores

    def readings(self, end: CudaEvent) -> tuple[float, list[float], float]:
        end.synchronize()  # the one synchronisation of the call
        ms = [self.start.elapsed_time(e) for e in self.events]
        return 0.0, [t / 1000.0 for t in ms], self.start.elapsed_time(end) / 1000.0


class GenerationCall:
    """One timed greedy ``generate`` per call; logs its readings, returns the new ids.

    ``cuda``: the ``torch.cuda`` module when the model runs on a GPU (events), else None
    (host clock). ``streamer_type`` and ``processors`` adapt the recorders to
    ``transformers``' base classes (``BaseStreamer``, ``LogitsProcessorList``).
    """

    def __init__(self, name: str, model: Any, inputs: dict[str, Any], max_new_tokens: int,
                 kwargs: dict[str, Any], log: GenerationLog, *,
                 cuda: CudaModule | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 streamer_type: Callable[[Callable[[], float]], HostStamps] = HostStamps,
                 processors: Callable[[Any, EventStamps], Any] | None = None) -> None:
        self.name = name
        self._model = model
        self._inputs = inputs
        self._n = max_new_tokens
        self._kwargs = kwargs
        self._log = log
        self._cuda = cuda
        self._clock = clock
        self._streamer_type = streamer_type
        self._processors = processors
        self._prompt = int(inputs["input_ids"].shape[-1])

    def __call__(self) -> Any:
        settings = dict(self._kwargs, max_new_tokens=self._n, min_new_tokens=self._n,
                        do_sample=False, num_beams=1)
        if self._cuda is None:
            stamps = self._streamer_type(self._clock)
            start = self._clock()
            out = self._model.generate(**self._inputs, **settings, streamer=stamps)
            end = self._clock()
            start_s, token_s, end_s = start, stamps.times, end
        else:
            events = EventStamps(self._cuda)
            if self._processors is not None:
                settings["logits_processor"] = self._processors(
                    settings.get("logits_processor"), events)
            events.start.record()
            out = self._model.generate(**self._inputs, **settings)
            last = self._cuda.Event(enable_timing=True)
            last.record()
            start_s, token_s, end_s = events.readings(last)
        sequences = getattr(out, "sequences", out)
        new = sequences[:, self._prompt:]
        made = int(new.shape[-1])
        if made != self._n or len(token_s) != self._n:
            raise GenerationError(
                f"generation variant {self.name!r}: {made} new tokens and {len(token_s)} "
                f"token readings, expected {self._n} of each (does the model's generation "
                "config stop early, or is this not a decoder-only model?)")
        self._log.add(call_metrics(start_s, token_s, end_s))
        return new


def token_ids(output: Any) -> list[list[int]] | None:
    """A (batch, tokens) tensor of ids as lists, or None for no output."""
    if output is None:
        return None
    rows = output.tolist()
    return [[int(t) for t in row] for row in rows]


def digest(input_ids: Any) -> str:
    """A short fingerprint of a prompt's token ids and shape."""
    rows = input_ids.tolist()
    return hashlib.sha1(repr(rows).encode()).hexdigest()[:16]


def prepare(device: Device) -> Callable[..., GenerationSource]:
    """``Bench.prepare_generation`` on ``device``: puts the model (in eval mode) and the
    inputs on the device, as ``hwopt_bench.model()`` does, and times tokens with the host
    clock on a CPU, CUDA events on a GPU."""

    def prepare_generation(name: str, model: Any, input_ids: Any, *, max_new_tokens: int,
                           attention_mask: Any, generate_kwargs: dict[str, Any]
                           ) -> GenerationSource:
        check_kwargs(name, generate_kwargs)
        if not callable(getattr(model, "generate", None)):
            raise GenerationError(f"hwopt_bench.generate({name!r}): the model has no "
                                  "generate(); pass a transformers model with a language "
                                  "modelling head (AutoModelForCausalLM)")
        shape = getattr(input_ids, "shape", None)
        if shape is None or len(shape) != 2:
            raise GenerationError(f"hwopt_bench.generate({name!r}): input_ids must be a "
                                  f"(batch, prompt length) tensor, got {shape or input_ids!r}")
        import torch

        target = torch.device(device.torch_device)
        model.to(target).eval()
        inputs = {"input_ids": input_ids.to(target)}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask.to(target)
        log = GenerationLog(name)
        call = GenerationCall(name, model, inputs, max_new_tokens, generate_kwargs, log,
                              cuda=torch.cuda if device.kind == "cuda" else None,
                              streamer_type=_streamer_type(),
                              processors=_with_processor)
        batch = int(shape[0])
        extra = MeasurementExtra()
        facts = {"generation": True, "max_new_tokens": max_new_tokens, "batch_size": batch,
                 "prompt_tokens": int(shape[1]),
                 "token_timer": "cuda events" if device.kind == "cuda"
                 else "host perf_counter (streamer)",
                 "generate_kwargs": {k: repr(v) for k, v in generate_kwargs.items()}}
        extra.update(facts)  # type: ignore[typeddict-item]
        return GenerationSource(fn=call, log=log, batch_size=batch,
                                items=batch * max_new_tokens, extra=extra,
                                token_ids=token_ids, prompt_digest=digest(input_ids),
                                evidence=lambda: attention_evidence(call, device.kind))

    return prepare_generation


def attention_evidence(call: Callable[[], Any], kind: str) -> dict[str, Any]:
    """Which attention kernels one call runs: the call under ``torch.profiler`` (CPU
    activity, and CUDA activity on a GPU, whose kernel names say which SDPA backend
    ran: forcing one does not prove it ran), untimed.
    ``{"attention_backends": [...], "attention_ops": [...]}``
    (:func:`pytest_hwopt.core.generation.attention_backends`)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if kind == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        call()
    names = {event.name for event in prof.events()}
    return {"attention_backends": attention_backends(names),
            "attention_ops": attention_ops(names)}


def _streamer_type() -> Callable[[Callable[[], float]], HostStamps]:
    """:class:`HostStamps` as a ``transformers`` ``BaseStreamer`` (imported here, lazily)."""
    from transformers.generation.streamers import BaseStreamer

    class Stamps(HostStamps, BaseStreamer):
        pass

    return Stamps


def _with_processor(given: Any, events: EventStamps) -> Any:
    """The caller's logits processors (if any), then the event recorder."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Recorder(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return events(input_ids, scores)

    out = LogitsProcessorList(list(given or []))
    out.append(Recorder())
    return out
