"""The generation path's timing of each token, on fakes that call back as ``generate`` does.

``transformers``' ``generate`` hands a streamer the prompt first, then each step's new
tokens, then calls ``end()``; it calls each logits processor once per step, right after
that step's forward pass. The fakes below do the same, on a fake clock (host) and fake
CUDA events, so every reading is exact. The real library is exercised in
tests/plugin/test_generation.py and, on a GPU, tests/gpu.
"""

from __future__ import annotations

import pytest

from pytest_hwopt.backends.generation import (
    GenerationCall,
    GenerationError,
    HostStamps,
    check_kwargs,
    token_ids,
)
from pytest_hwopt.core.generation import GenerationLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Ids:
    """A (batch, length) tensor of ids, as much of one as the path uses."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), len(self.rows[0]))

    def __getitem__(self, index: tuple[slice, slice]) -> Ids:
        rows, cols = index
        return Ids([row[cols] for row in self.rows[rows]])

    def tolist(self) -> list[list[int]]:
        return [list(r) for r in self.rows]


class FakeModel:
    """``generate`` that takes ``prefill_s`` for the first token and ``step_s`` for each
    later one on ``clock``, calling the streamer and logits processors as the real one does."""

    def __init__(self, clock: Clock, prefill_s: float = 0.125, step_s: float = 0.0625,
                 stop_after: int | None = None, cuda: FakeCuda | None = None) -> None:
        self.clock, self.prefill_s, self.step_s = clock, prefill_s, step_s
        self.stop_after = stop_after
        self.cuda = cuda
        self.kwargs: dict[str, object] = {}

    def generate(self, input_ids: Ids, **kwargs: object) -> Ids:
        self.kwargs = kwargs
        streamer = kwargs.get("streamer")
        processors = kwargs.get("logits_processor") or []
        n = int(kwargs["max_new_tokens"])  # type: ignore[call-overload]
        if self.stop_after is not None:
            n = self.stop_after
        if streamer is not None:
            streamer.put(input_ids)  # the prompt first
        rows = [list(r) for r in input_ids.rows]
        for step in range(n):
            self.clock.advance(self.prefill_s if step == 0 else self.step_s)
            for processor in processors:  # type: ignore[attr-defined]
                processor(input_ids, "scores")
            for r in rows:
                r.append(step + 7)
            if streamer is not None:
                streamer.put([step + 7] * len(rows))
        if streamer is not None:
            streamer.end()
        self.clock.advance(0.001953125)  # returning the output
        return Ids(rows)


class FakeEvent:
    """A CUDA event whose timestamp is the fake clock's reading at ``record()``."""

    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.at: float | None = None

    def record(self) -> None:
        self.at = self.cuda.clock()

    def synchronize(self) -> None:
        self.cuda.syncs += 1

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.at is not None and end.at is not None, "both events recorded"
        assert self.cuda.syncs, "elapsed_time before the events completed"
        return (end.at - self.at) * 1000.0


class FakeCuda:
    """What the path uses of ``torch.cuda``: ``Event(enable_timing=True)``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.syncs = 0
        self.events = 0

    def Event(self, *, enable_timing: bool) -> FakeEvent:  # torch's name
        assert enable_timing
        self.events += 1
        return FakeEvent(self)


PROMPT = Ids([[1, 2, 3], [4, 5, 6]])


def test_host_clock_times_each_token_and_skips_the_prompt():
    clock = Clock()
    log = GenerationLog("gen")
    call = GenerationCall("gen", FakeModel(clock), {"input_ids": PROMPT}, 4, {}, log,
                          clock=clock)
    out = call()
    assert out.tolist() == [[7, 8, 9, 10], [7, 8, 9, 10]]  # the new tokens only
    [metrics] = log.calls
    assert metrics.ttft_ms == 125.0
    assert metrics.itl_ms == (62.5, 62.5, 62.5)
    assert metrics.tpot_ms == (125.0 + 3 * 62.5 + 1.953125 - 125.0) / 3
    assert metrics.tokens == 4


def test_each_call_is_greedy_and_forced_to_exactly_max_new_tokens():
    clock = Clock()
    model = FakeModel(clock)
    GenerationCall("gen", model, {"input_ids": PROMPT}, 4, {"use_cache": False},
                   GenerationLog("gen"), clock=clock)()
    assert {k: model.kwargs[k] for k in ("max_new_tokens", "min_new_tokens", "do_sample",
                                         "num_beams", "use_cache")} == \
        {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False, "num_beams": 1,
         "use_cache": False}
    assert isinstance(model.kwargs["streamer"], HostStamps)


def test_a_call_that_stops_early_is_an_error():
    clock = Clock()
    call = GenerationCall("gen", FakeModel(clock, stop_after=2), {"input_ids": PROMPT}, 4, {},
                          GenerationLog("gen"), clock=clock)
    with pytest.raises(GenerationError, match="'gen': 2 new tokens and 2 token readings, "
                                              "expected 4 of each"):
        call()


def test_cuda_events_time_each_token_with_one_synchronisation_per_call():
    clock = Clock()
    cuda = FakeCuda(clock)
    log = GenerationLog("gen")
    given: list[object] = []

    def processors(user: object, recorder: object) -> list[object]:
        given.append(user)
        return [recorder]

    call = GenerationCall("gen", FakeModel(clock), {"input_ids": PROMPT}, 3,
                          {"logits_processor": "theirs"}, log, cuda=cuda,  # type: ignore[arg-type]
                          processors=processors)
    call()
    assert given == ["theirs"], "the caller's processors are kept"
    assert cuda.syncs == 1
    assert cuda.events == 1 + 3 + 1  # start, one per token, end
    [metrics] = log.calls
    assert metrics.ttft_ms == 125.0
    assert metrics.itl_ms == (62.5, 62.5)
    assert metrics.e2e_ms == 125.0 + 62.5 + 62.5 + 1.953125


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_new_tokens": 5}, "max_new_tokens= is set by the plugin"),
    ({"min_new_tokens": 5}, "min_new_tokens= is set by the plugin"),
    ({"streamer": object()}, "streamer= is set by the plugin"),
    ({"do_sample": True}, "do_sample=True: calls are greedy"),
    ({"num_beams": 4}, "num_beams=4: calls are greedy with one sequence per prompt"),
])
def test_settings_that_contradict_greedy_exact_generation_are_refused(kwargs, message):
    with pytest.raises(GenerationError, match=message):
        check_kwargs("gen", kwargs)


def test_token_ids_are_lists_of_ints():
    assert token_ids(Ids([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    assert token_ids(None) is None
