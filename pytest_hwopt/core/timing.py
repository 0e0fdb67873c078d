"""Timers that time a block of samples of a callable, and flag the disturbed ones.

A timer returns the duration of each sample (``calls_per_sample`` back-to-back
calls) in seconds. Host timers read ``perf_counter``; on an accelerator the host
clock is only read after a device synchronisation, or device events are used
with one synchronisation per block.

A timer that also has :meth:`FlaggingTimer.time_flagged` says, per sample, whether
the process was kept from a CPU during it (preempted, or waiting in the run queue;
see :class:`~pytest_hwopt.core.contention.Preemption`); :func:`time_flagged` asks any
timer, and counts every sample of a timer without flags as undisturbed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pytest_hwopt.core.contention import DisturbanceProbe, Preemption, SchedCounters

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

#: what a timer calls: any callable without arguments (its return value is ignored)
Work = Callable[[], object]


@dataclass(frozen=True)
class Timed:
    """One block of samples: ``seconds[i]`` is sample i's duration (s), ``disturbed[i]``
    whether the process was kept from a CPU during it. Both have one entry per sample."""

    seconds: list[float]
    disturbed: list[bool]


class Timer(Protocol):
    """Times samples of ``fn``; ``name`` labels results with how they were timed."""

    name: str

    def time_samples(self, fn: Work, calls_per_sample: int,
                     samples: int) -> list[float]: ...


@runtime_checkable
class FlaggingTimer(Timer, Protocol):
    """A timer that also flags disturbed samples."""

    def time_flagged(self, fn: Work, calls_per_sample: int, samples: int) -> Timed: ...


def time_flagged(timer: Timer, fn: Work, calls_per_sample: int, samples: int) -> Timed:
    """Time a block with ``timer``; a timer that cannot flag marks every sample undisturbed."""
    if isinstance(timer, FlaggingTimer):
        return timer.time_flagged(fn, calls_per_sample, samples)
    seconds = timer.time_samples(fn, calls_per_sample, samples)
    return Timed(list(seconds), [False] * len(seconds))


def _flags(probe: DisturbanceProbe, readings: Sequence[SchedCounters],
           seconds: Sequence[float]) -> list[bool]:
    """Sample i lies between readings i and i + 1."""
    return [probe.disturbed(readings[i], readings[i + 1], s) for i, s in enumerate(seconds)]


class CudaEvent(Protocol):
    """A CUDA event as ``torch.cuda.Event(enable_timing=True)`` makes it."""

    def record(self) -> None: ...

    def elapsed_time(self, end: Self, /) -> float:
        """Milliseconds from this event to ``end``."""
        ...


class CudaStream(Protocol):
    """A CUDA stream as ``torch.cuda.Stream`` makes it."""

    # Any: torch's streams take only their own class (typed as torch.cuda.Stream)
    def wait_stream(self, stream: Any, /) -> None:
        """Order this stream's later work after the work queued on ``stream`` so far."""
        ...


class CudaEvents(Protocol):
    """What :class:`CudaEventTimer` uses of the ``torch.cuda`` module.

    ``device(index)`` makes a device current (events, streams and ``synchronize()`` act on
    the current device); ``stream(s)`` makes a stream current on its device.
    """

    def Event(self, *, enable_timing: bool) -> CudaEvent: ...

    def synchronize(self) -> None: ...

    def device(self, index: int, /) -> AbstractContextManager[object]: ...

    def stream(self, stream: Any, /) -> AbstractContextManager[object]: ...

    def current_stream(self) -> CudaStream: ...


class HostTimer:
    """``time.perf_counter`` around each sample; right for work that ends on return.

    ``probe`` flags disturbed samples in :meth:`time_flagged` (default
    :class:`Preemption`); it is read between samples, outside the clock readings, so its
    cost is not in the times. :meth:`time_samples` does not read it (warm-up: no cost).
    """

    name = "host perf_counter"

    def __init__(self, probe: DisturbanceProbe | None = None) -> None:
        self.probe: DisturbanceProbe = probe if probe is not None else Preemption()

    def time_samples(self, fn: Work, calls_per_sample: int,
                     samples: int) -> list[float]:
        clock = time.perf_counter
        out = []
        calls = range(calls_per_sample)
        for _ in range(samples):
            start = clock()
            for _ in calls:
                fn()
            out.append(clock() - start)
        return out

    def time_flagged(self, fn: Work, calls_per_sample: int, samples: int) -> Timed:
        clock = time.perf_counter
        out = []
        calls = range(calls_per_sample)
        with self.probe.reading() as read:
            readings = [read()]
            for _ in range(samples):
                start = clock()
                for _ in calls:
                    fn()
                out.append(clock() - start)
                readings.append(read())
        return Timed(out, _flags(self.probe, readings, out))


class SyncedHostTimer:
    """Host clock read only after ``synchronize()``: counts queued device work.

    ``probe`` flags disturbed samples in :meth:`time_flagged`, as for :class:`HostTimer`.
    """

    name = "host perf_counter after device synchronize"

    def __init__(self, synchronize: Callable[[], None],
                 probe: DisturbanceProbe | None = None) -> None:
        self._sync = synchronize
        self.probe: DisturbanceProbe = probe if probe is not None else Preemption()

    def time_samples(self, fn: Work, calls_per_sample: int,
                     samples: int) -> list[float]:
        clock, sync = time.perf_counter, self._sync
        out = []
        calls = range(calls_per_sample)
        sync()
        for _ in range(samples):
            start = clock()
            for _ in calls:
                fn()
            sync()
            out.append(clock() - start)
        return out

    def time_flagged(self, fn: Work, calls_per_sample: int, samples: int) -> Timed:
        clock, sync = time.perf_counter, self._sync
        out = []
        calls = range(calls_per_sample)
        sync()
        with self.probe.reading() as read:
            readings = [read()]
            for _ in range(samples):
                start = clock()
                for _ in calls:
                    fn()
                sync()
                out.append(clock() - start)
                readings.append(read())
        return Timed(out, _flags(self.probe, readings, out))


class CudaEventTimer:
    """CUDA events around each sample on a stream of one device, one synchronisation per block.

    ``device`` is the CUDA ordinal the work runs on: it is made current while a block is
    timed, so the events, the stream and the synchronisation are that device's (None:
    whichever device is current, right only on a one-GPU machine). ``stream``: the
    samples run with it current (it first waits for the work already queued on the
    current stream, which then waits for it); None: the current stream.

    ``between`` runs before each sample outside the timed region (an L2 flush);
    its events are not recorded, so its cost is excluded. ``one_call_per_sample``
    tells the engine not to batch calls into a sample: set for a flush, so that every
    timed call starts cold (a batch would time calls 2..k warm).

    ``probe`` flags a sample when the host was kept from a CPU while it queued the
    sample's work (from the read before ``between`` to the read after the end event):
    a host that stalls while it launches leaves the device idle inside the timed region,
    which launch-bound work (many small kernels) shows as time. Work the device already
    had queued does not need the host, so the flag can discard a sample that was not
    slowed: conservative, never the other way round.
    """

    name = "cuda events"

    def __init__(self, cuda: CudaEvents, between: Callable[[], None] | None = None,
                 probe: DisturbanceProbe | None = None, *, device: int | None = None,
                 stream: CudaStream | None = None,
                 one_call_per_sample: bool = False) -> None:
        self._cuda = cuda  # the torch.cuda module, passed in so tests can use a fake
        self._between = between
        self.probe: DisturbanceProbe = probe if probe is not None else Preemption()
        self.device = device
        self.stream = stream
        self.one_call_per_sample = one_call_per_sample

    def time_samples(self, fn: Work, calls_per_sample: int,
                     samples: int) -> list[float]:
        return self.time_flagged(fn, calls_per_sample, samples).seconds

    def time_flagged(self, fn: Work, calls_per_sample: int, samples: int) -> Timed:
        cuda = self._cuda
        on_device: AbstractContextManager[object] = (
            cuda.device(self.device) if self.device is not None else contextlib.nullcontext())
        with on_device:
            with contextlib.ExitStack() as on_stream:
                if self.stream is not None:
                    caller = cuda.current_stream()
                    self.stream.wait_stream(caller)
                    on_stream.callback(caller.wait_stream, self.stream)  # after leaving it
                    on_stream.enter_context(cuda.stream(self.stream))
                pairs = [(cuda.Event(enable_timing=True), cuda.Event(enable_timing=True))
                         for _ in range(samples)]
                calls = range(calls_per_sample)
                with self.probe.reading() as read:
                    readings = [read()]
                    for start, end in pairs:
                        if self._between is not None:
                            self._between()
                        start.record()
                        for _ in calls:
                            fn()
                        end.record()
                        readings.append(read())
            cuda.synchronize()  # the current device's: the one the work ran on
        out = [start.elapsed_time(end) / 1000.0 for start, end in pairs]
        return Timed(out, _flags(self.probe, readings, out))
