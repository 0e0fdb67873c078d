"""Timers that time a block of samples of a callable.

A timer returns the duration of each sample (``calls_per_sample`` back-to-back
calls) in seconds. Host timers read ``perf_counter``; on an accelerator the host
clock is only read after a device synchronisation, or device events are used
with one synchronisation per block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

#: what a timer calls: any callable without arguments (its return value is ignored)
Work = Callable[[], object]


class Timer(Protocol):
    """Times samples of ``fn``; ``name`` labels results with how they were timed."""

    name: str

    def time_samples(self, fn: Work, calls_per_sample: int,
                     samples: int) -> list[float]: ...


class CudaEvent(Protocol):
    """A CUDA event as ``torch.cuda.Event(enable_timing=True)`` makes it."""

    def record(self) -> None: ...

    def elapsed_time(self, end: Self, /) -> float:
        """Milliseconds from this event to ``end``."""
        ...


class CudaEvents(Protocol):
    """What :class:`CudaEventTimer` uses of the ``torch.cuda`` module."""

    def Event(self, *, enable_timing: bool) -> CudaEvent: ...

    def synchronize(self) -> None: ...


class HostTimer:
    """``time.perf_counter`` around each sample; right for work that ends on return."""

    name = "host perf_counter"

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


class SyncedHostTimer:
    """Host clock read only after ``synchronize()``: counts queued device work."""

    name = "host perf_counter after device synchronize"

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._sync = synchronize

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


class CudaEventTimer:
    """CUDA events around each sample on the current stream, one synchronisation per block.

    ``between`` runs before each sample outside the timed region (an L2 flush);
    its events are not recorded, so its cost is excluded.
    """

    name = "cuda events"

    def __init__(self, cuda: CudaEvents, between: Callable[[], None] | None = None) -> None:
        self._cuda = cuda  # the torch.cuda module, passed in so tests can use a fake
        self._between = between

    def time_samples(self, fn: Work, calls_per_sample: int,
                     samples: int) -> list[float]:
        cuda = self._cuda
        pairs = [(cuda.Event(enable_timing=True), cuda.Event(enable_timing=True))
                 for _ in range(samples)]
        calls = range(calls_per_sample)
        for start, end in pairs:
            if self._between is not None:
                self._between()
            start.record()
            for _ in calls:
                fn()
            end.record()
        cuda.synchronize()
        return [start.elapsed_time(end) / 1000.0 for start, end in pairs]
