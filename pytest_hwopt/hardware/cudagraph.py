"""CUDA graph capture of a callable, and an L2 flush for cold-cache timing.

torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

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
    """Calls replay the captured graph and return a copy of its outputs.

    The graph writes its outputs into the same (static) tensors on every replay, so a
    kept output would change under the holder at the next call: the output before
    timing and the one after it would be one object, and their comparison would prove
    nothing. Each call therefore returns a fresh copy (one device-to-device copy of the
    outputs, inside the timed call, as an eager call writes fresh outputs too);
    ``static_output`` is the graph's own. Inputs are the tensors ``fn`` read during
    capture; write new values into them in place. Replays run on ``device`` (made
    current for them) and on the caller's current stream.
    """

    def __init__(self, graph: torch.cuda.CUDAGraph, output: T, stream: torch.cuda.Stream,
                 device: int | None = None) -> None:
        self.graph = graph
        self.static_output = output
        self.stream = stream
        self.device = device

    def __call__(self) -> T:
        if self.device is None:
            self.graph.replay()
            return copy_outputs(self.static_output)
        import torch

        with torch.cuda.device(self.device):
            self.graph.replay()
            return copy_outputs(self.static_output)


def copy_outputs(value: T) -> T:
    """``value`` with every tensor in it cloned (tuples, lists and dicts rebuilt alike)."""
    return cast(T, _copied(value))


def _copied(value: Any) -> Any:
    if callable(getattr(value, "clone", None)):
        return value.clone()
    if isinstance(value, dict):
        return type(value)((k, _copied(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [_copied(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def capture(fn: Callable[[], T], warmup: int = 3, stream: torch.cuda.Stream | None = None,
            pool: _POOL_HANDLE | None = None,
            capture_error_mode: str = "global", device: int | None = None) -> GraphReplay[T]:
    """Warm ``fn`` up on a side stream, capture one call into a ``torch.cuda.CUDAGraph``.

    ``device`` is the CUDA ordinal ``fn`` works on: it is made current for warm-up,
    capture and every replay (None: the current device). Warm-up and capture use the
    same stream (``stream``, else a new side stream on the device), so libraries create
    their per-stream handles (cuBLAS workspaces) before capture, not during it. ``pool``
    is a memory pool handle to share (``torch.cuda.graph_pool_handle()``);
    ``capture_error_mode`` is passed to ``torch.cuda.graph``. Raises
    :class:`CaptureError` without CUDA or when ``fn`` fails while captured,
    :class:`ValueError` for ``warmup < 1``.
    """
    import torch

    if not torch.cuda.is_available():
        raise CaptureError("CUDA graphs need a CUDA device; none is usable here "
                           f"(torch {torch.__version__}, CUDA {torch.version.cuda})")
    if warmup < 1:
        raise ValueError(f"warmup must be at least 1 call, got {warmup}")
    index = torch.cuda.current_device() if device is None else device
    with torch.cuda.device(index):
        side = stream if stream is not None else torch.cuda.Stream(device=index)
        side.wait_stream(torch.cuda.current_stream(index))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream(index).wait_stream(side)
        torch.cuda.synchronize(index)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=pool, stream=side,
                                  capture_error_mode=capture_error_mode):
                output = fn()
        except Exception as exc:  # torch raises RuntimeError / torch.AcceleratorError
            first = (str(exc).strip().splitlines() or [""])[0]
            raise CaptureError(f"capture of {_name(fn)} failed ({type(exc).__name__}: "
                               f"{first}); {CAPTURE_HINT}") from exc
        torch.cuda.synchronize(index)
    return GraphReplay(graph, output, side, index)


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
