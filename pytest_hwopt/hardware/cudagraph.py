"""CUDA graph capture of a callable, and an L2 flush for cold-cache timing.

torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import torch
    from torch.cuda import _POOL_HANDLE  # what torch.cuda.graph_pool_handle() returns

T = TypeVar("T")  # what the captured callable returns

CAPTURE_HINT = ("code captured into a CUDA graph must not synchronise with the host "
                "(.item(), .cpu(), .tolist(), print(tensor), torch.cuda.synchronize()), "
                "create CUDA tensors from Python data, change shapes, or use the default "
                "stream")


class CaptureError(RuntimeError):
    """``fn`` could not be captured into a CUDA graph; the message says what it did."""


class GraphReplay(Generic[T]):
    """Calls replay the captured graph and return the outputs of the captured call.

    The outputs are the same (static) tensors every time: copy them to keep a
    result past the next replay. Inputs are the tensors ``fn`` read during
    capture; write new values into them in place.
    """

    def __init__(self, graph: torch.cuda.CUDAGraph, output: T, stream: torch.cuda.Stream) -> None:
        self.graph = graph
        self.static_output = output
        self.stream = stream

    def __call__(self) -> T:
        self.graph.replay()
        return self.static_output


def capture(fn: Callable[[], T], warmup: int = 3, stream: torch.cuda.Stream | None = None,
            pool: _POOL_HANDLE | None = None,
            capture_error_mode: str = "global") -> GraphReplay[T]:
    """Warm ``fn`` up on a side stream, capture one call into a ``torch.cuda.CUDAGraph``.

    Warm-up and capture use the same stream (``stream``, else a new side stream),
    so libraries create their per-stream handles (cuBLAS workspaces) before
    capture, not during it. ``pool`` is a memory pool handle to share
    (``torch.cuda.graph_pool_handle()``); ``capture_error_mode`` is passed to
    ``torch.cuda.graph``. Raises :class:`CaptureError` without CUDA or when ``fn``
    fails while captured, :class:`ValueError` for ``warmup < 1``.
    """
    import torch

    if not torch.cuda.is_available():
        raise CaptureError("CUDA graphs need a CUDA device; none is usable here "
                           f"(torch {torch.__version__}, CUDA {torch.version.cuda})")
    if warmup < 1:
        raise ValueError(f"warmup must be at least 1 call, got {warmup}")
    side = stream if stream is not None else torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, pool=pool, stream=side,
                              capture_error_mode=capture_error_mode):
            output = fn()
    except Exception as exc:  # torch raises RuntimeError / torch.AcceleratorError
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CaptureError(f"capture of {_name(fn)} failed ({type(exc).__name__}: {first}); "
                           f"{CAPTURE_HINT}") from exc
    torch.cuda.synchronize()
    return GraphReplay(graph, output, side)


def _name(fn: Callable[[], object]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def l2_flusher(device_index: int = 0, mb: int = 256) -> Callable[[], None]:
    """A function that zeroes an ``mb`` MB buffer on ``cuda:<device_index>``.

    Run it between timed samples (e.g. ``CudaEventTimer(between=...)``), outside
    the timed region, so each sample starts with the L2 cache holding none of the
    measured work's data. 256 MB is several times the largest L2 (50 MB on H100).
    """
    import torch

    buffer = torch.empty(mb * 2**20, dtype=torch.uint8, device=f"cuda:{device_index}")

    def flush() -> None:
        buffer.zero_()

    flush.buffer = buffer  # type: ignore[attr-defined]
    return flush
