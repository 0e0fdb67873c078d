"""A stand-in for ``torch.cuda`` that behaves as CUDA does with several GPUs and streams.

What the real library does and the fake keeps:

- each device has its own clock; work runs on the device its tensors live on, whichever
  device is current (``kernel(device=1)`` advances GPU 1 only);
- ``Event.record()`` records on the *current stream of the current device*; the elapsed
  time between events of two devices is an error, and reading it before the device was
  synchronised is an error ("device not ready");
- ``synchronize()`` waits for the current device only;
- the current stream starts as the legacy default stream, whose handle is 0;
  ``Stream()`` makes a new stream with a non-zero handle on the current device;
  ``stream(s)`` makes ``s`` current on its device; ``wait_stream`` orders two streams.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any


class FakeStream:
    _handles = itertools.count(0x7F00)

    def __init__(self, cuda: FakeCuda, device: int | None = None, default: bool = False) -> None:
        self.cuda = cuda
        self.device = cuda.current if device is None else device
        self.cuda_stream = 0 if default else next(self._handles)

    def wait_stream(self, other: FakeStream) -> None:
        self.cuda.log.append(("wait", self.cuda_stream, other.cuda_stream))

    def synchronize(self) -> None:
        self.cuda.log.append(("stream sync", self.cuda_stream))

    def __repr__(self) -> str:
        return f"<stream {self.cuda_stream:#x} on cuda:{self.device}>"


class FakeEvent:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.device: int | None = None
        self.stream: int | None = None
        self.at = 0.0
        self.record_index = 0

    def record(self) -> None:
        cuda = self.cuda
        self.device = cuda.current
        self.stream = cuda.current_stream().cuda_stream
        self.at = cuda.clock_ms[self.device]
        self.record_index = len(cuda.log)
        cuda.log.append(("record", self.device, self.stream))

    def elapsed_time(self, end: FakeEvent) -> float:
        if self.device != end.device:
            raise RuntimeError("CUDA error: invalid resource handle (events of two devices)")
        synced = [i for i, entry in enumerate(self.cuda.log)
                  if entry == ("synchronize", self.device) and i > end.record_index]
        if not synced:
            raise RuntimeError("CUDA error: device not ready")
        return end.at - self.at


class FakeCuda:
    """``torch.cuda`` with ``count`` GPUs; ``log`` records records, waits and syncs."""

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.current = 0
        self.clock_ms = [0.0] * count
        self.log: list[tuple[Any, ...]] = []
        self._current_streams = {d: FakeStream(self, d, default=True) for d in range(count)}

    # the API
    def Event(self, *, enable_timing: bool) -> FakeEvent:
        assert enable_timing
        return FakeEvent(self)

    def synchronize(self, device: int | None = None) -> None:
        self.log.append(("synchronize", self.current if device is None else device))

    @contextlib.contextmanager
    def device(self, index: int) -> Iterator[None]:
        if not 0 <= index < self.count:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        previous, self.current = self.current, index
        try:
            yield
        finally:
            self.current = previous

    def Stream(self, device: int | None = None) -> FakeStream:
        return FakeStream(self, device)

    @contextlib.contextmanager
    def stream(self, stream: FakeStream) -> Iterator[None]:
        previous = self._current_streams[stream.device]
        self._current_streams[stream.device] = stream
        with self.device(stream.device):
            try:
                yield
            finally:
                self._current_streams[stream.device] = previous

    def current_stream(self, device: int | None = None) -> FakeStream:
        return self._current_streams[self.current if device is None else device]

    def current_device(self) -> int:
        return self.current

    # the work
    def kernel(self, device: int, ms: float) -> None:
        """Queue ``ms`` of work on ``device`` (its tensors' device): returns at once."""
        self.clock_ms[device] += ms
