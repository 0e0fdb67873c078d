"""How one call of a variant is made: its ``setup``, and what its return value means.

A variant's callable may return its output (any value), or something that only defers the
work:

- an **awaitable** (a coroutine, an ``asyncio`` future or task, any object with
  ``__await__``): the work happens when it is awaited, so it is awaited, inside the timed
  call, on the event loop the engine owns (:class:`EventLoop`); a future that belongs to
  another loop is awaited on that loop. ``async def`` functions (and ``functools.partial``
  of them, objects with an ``async def __call__``) are called inside the engine's running
  loop from their first call; any other callable is called as it is, and once it has
  returned an awaitable, inside the running loop from then on, so that code that needs a
  running loop (``asyncio.create_task``, ``asyncio.get_running_loop``) works (a first
  call that fails for want of a running loop is made again inside it);
- a ``concurrent.futures.Future`` (``executor.submit(...)``): its result is waited for
  inside the timed call; an array computed asynchronously (an object with
  ``block_until_ready()``, as JAX arrays have): waited for likewise;
- a **lazy iterator** (a generator, a generator expression, ``map``, ``filter``, ``zip``
  objects, any other iterator, an async generator): its work happens only when it is
  consumed, which no timed call does, so it is refused with :class:`DeferredOutput`,
  naming the variant and the fix (``lambda: list(gen())``).

Pure: standard library only (``asyncio`` is imported on first need).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncio

#: what a variant runs: called with no argument, or with its setup's value
Fn = Callable[..., Any]

#: how deep, and how many items per container, an output is searched for deferred values
_SEARCH_DEPTH: Final = 3
_SEARCH_ITEMS: Final = 64


class DeferredOutput(TypeError):
    """A variant returned something whose work is deferred and cannot be timed (a
    generator or other lazy iterator, or an awaitable nested inside a container); the
    message names the variant and the fix."""


def is_async_callable(fn: object) -> bool:
    """``fn`` is an ``async def`` function, a ``functools.partial`` of one, or an object
    whose ``__call__`` is one: calling it makes a coroutine."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or not callable(fn):
        return False
    return inspect.iscoroutinefunction(type(fn).__call__)


def _is_generator_callable(fn: object) -> str:
    """``"a generator"`` or ``"an async generator"`` when calling ``fn`` makes one, else
    ``""``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isgeneratorfunction(fn):
        return "a generator"
    if inspect.isasyncgenfunction(fn):
        return "an async generator"
    return ""


def check_callable(name: str, fn: object, where: str = "hwopt_bench.measure") -> None:
    """Refuse, before any call, what cannot be a variant: a non-callable (with the fix for
    a coroutine or iterator passed instead of a function) and a generator function.
    Raises ``TypeError`` (:class:`DeferredOutput` for deferred work)."""
    if inspect.isawaitable(fn):
        if inspect.iscoroutine(fn):
            fn.close()  # never awaited, on purpose: no "never awaited" warning
        raise TypeError(
            f"{where}({name!r}): fn is {_describe(fn)} (one awaitable, used up by one call), "
            "not a callable; pass a function that makes a new one per call, e.g. "
            f"{where}({name!r}, lambda: work())")
    if isinstance(fn, (Iterator, AsyncIterator)):
        raise DeferredOutput(
            f"{where}({name!r}): fn is {_describe(fn)}, not a callable; its work runs only "
            f"when it is consumed. Pass a function that returns the values: "
            f"{where}({name!r}, lambda: list(gen()))")
    if not callable(fn):
        raise TypeError(f"{where}({name!r}): fn must be callable, got {type(fn).__name__}")
    made = _is_generator_callable(fn)
    if made:
        raise DeferredOutput(_lazy_message(
            name, made, where, lead=f"{where}({name!r}): fn is a generator function, whose "
                                  f"every call returns {made}"))


def _describe(value: object) -> str:
    """``a coroutine``, ``a generator``, ``a map object``, ``an asyncio Future``."""
    if inspect.iscoroutine(value):
        return "a coroutine"
    if inspect.isgenerator(value):
        return "a generator"
    if inspect.isasyncgen(value):
        return "an async generator"
    cls = type(value)
    module = "" if cls.__module__ in ("builtins", "itertools") else cls.__module__ + "."
    if cls.__module__.startswith("asyncio"):
        module = "asyncio "
    article = "an" if (module or cls.__name__)[:1].lower() in "aeiou" else "a"
    return f"{article} {module}{cls.__name__} object"


def _lazy_message(name: str, what: str, where: str = "hwopt_bench.measure",
                  path: str = "", lead: str = "") -> str:
    returned = f"an output holding {what} at {path}" if path else what
    lead = lead or f"variant {name!r} returned {returned}"
    if "async generator" in what:
        fix = (f"collect it in an async def, e.g. `async def collect(): return "
               f"[x async for x in agen()]`, and measure that: {where}({name!r}, collect)")
    else:
        fix = f"return the values instead: {where}({name!r}, lambda: list(gen()))"
    return (f"{lead}: its work runs only when it is consumed, so timing the call would time "
            f"nothing; {fix}")


def deferred_in(value: object) -> tuple[str, str, bool] | None:
    """``(path, description, lazy)`` of the first lazy iterator (``lazy``) or awaitable in
    ``value`` (the value itself: path ``""``; else inside tuples, lists and dicts, a few
    levels deep), or None. Strings, bytes and arrays are values, not iterators."""

    def search(item: object, path: str, depth: int) -> tuple[str, str, bool] | None:
        if isinstance(item, (Iterator, AsyncIterator)):
            return path, _describe(item), True
        if inspect.isawaitable(item):
            return path, _describe(item), False
        if depth >= _SEARCH_DEPTH:
            return None
        if isinstance(item, (tuple, list)):
            for n, sub in enumerate(item[:_SEARCH_ITEMS]):
                found = search(sub, f"{path}[{n}]", depth + 1)
                if found:
                    return found
        elif type(item) is dict:
            for n, (key, sub) in enumerate(item.items()):
                if n >= _SEARCH_ITEMS:
                    break
                found = search(sub, f"{path}[{key!r}]", depth + 1)
                if found:
                    return found
        return None

    return search(value, "", 0)


def refuse_deferred(name: str, value: object) -> None:
    """Raise :class:`DeferredOutput` when ``value`` (an output, a returned awaitable
    already awaited) is or holds a lazy iterator or an awaitable; closes the coroutines it
    holds, so that none is reported as never awaited."""
    found = deferred_in(value)
    if found is None:
        return
    path, what, lazy = found
    _close_coroutines(value)
    if lazy:
        raise DeferredOutput(_lazy_message(name, what, path=path))
    where = f"holding {what} at {path}" if path else f"{what} (an awaitable that resolved " \
        "to another awaitable)"
    raise DeferredOutput(
        f"variant {name!r} returned an output {where}: only an awaitable returned as the "
        "output itself is awaited; await the others in an async def (e.g. `async def "
        "both(): return await asyncio.gather(a(), b())`) and measure that: "
        f"hwopt_bench.measure({name!r}, both)")


def _close_coroutines(value: object, depth: int = 0) -> None:
    if inspect.iscoroutine(value):
        value.close()
    elif depth < _SEARCH_DEPTH and isinstance(value, (tuple, list)):
        for sub in value[:_SEARCH_ITEMS]:
            _close_coroutines(sub, depth + 1)
    elif depth < _SEARCH_DEPTH and type(value) is dict:
        for sub in list(value.values())[:_SEARCH_ITEMS]:
            _close_coroutines(sub, depth + 1)


#: asyncio's message when code that needs a running loop is called outside one
_NO_RUNNING_LOOP: Final = "no running event loop"


class EventLoop:
    """The event loop a test's awaitable variants are awaited on: made on first need,
    closed by :meth:`close` (pending tasks cancelled, async generators and the default
    executor shut down, as ``asyncio.run`` does)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def made(self) -> bool:
        return self._loop is not None

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, awaitable: Any, name: str) -> Any:
        """Await ``awaitable`` to completion and return its result: on the loop an
        ``asyncio`` future belongs to, else on this loop. Raises ``RuntimeError`` naming
        the variant when that loop cannot run here (another loop is running)."""
        import asyncio

        try:
            self._check_not_nested(name)
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never to be awaited: no second warning about it
            raise
        loop = self.loop()
        if isinstance(awaitable, asyncio.Future) and awaitable.get_loop() is not loop:
            loop = awaitable.get_loop()
        return loop.run_until_complete(awaitable)

    def call(self, fn: Fn, args: tuple[Any, ...], name: str) -> Any:
        """Call ``fn(*args)`` inside this running loop and await what it returns."""
        self._check_not_nested(name)
        return self.loop().run_until_complete(_call_and_await(fn, args))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """This loop as the thread's current event loop while the block runs, so that a
        first call that makes a future (``asyncio.ensure_future``,
        ``asyncio.get_event_loop().create_future()``) makes it here; only where ``asyncio``
        is loaded and no loop is current (one that is stays so), then unset again, as
        ``asyncio.run`` leaves it."""
        aio = sys.modules.get("asyncio")
        if aio is None:  # nothing can make a future without it
            yield
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the policy API (3.14)
            policy = aio.get_event_loop_policy()
        # the policy's own record of the current loop: asking get_event_loop() would make
        # one in the main thread where none is set
        local = getattr(policy, "_local", None)
        if local is None or getattr(local, "_loop", None) is not None:
            yield
            return
        policy.set_event_loop(self.loop())
        try:
            yield
        finally:
            policy.set_event_loop(None)

    @staticmethod
    def _check_not_nested(name: str) -> None:
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise RuntimeError(
            f"variant {name!r} returns an awaitable, which the engine awaits on its own event "
            "loop, but measurement was started inside a running event loop (hwopt_bench.run() "
            "in an async test?); let the plugin measure after the test body, or call run() "
            "from a synchronous test")

    def close(self) -> None:
        """Cancel what is still pending, shut the loop down and close it (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        import asyncio

        try:
            if asyncio._get_running_loop() is not None:
                return  # inside another running loop: this one cannot run to shut down
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


async def _call_and_await(fn: Fn, args: tuple[Any, ...]) -> Any:
    out = fn(*args)
    if inspect.isawaitable(out):
        out = await out
    return out


class Caller:
    """Makes the calls of one variant: ``setup`` (untimed, by the caller of
    :meth:`prepared`) and ``fn``, awaiting what it returns when that is an awaitable.

    The first call (:meth:`first`) finds out what ``fn`` returns; after it,
    :meth:`prepared` gives the zero-argument callable the timer times, with no wrapper at
    all for a plain variant without setup.
    """

    def __init__(self, name: str, fn: Fn, setup: Callable[[], Any] | None,
                 loop: EventLoop) -> None:
        self.name = name
        self.fn = fn
        self.setup = setup
        self._loop = loop
        #: "plain" (returns its output), "inside" (called inside the running loop, its
        #: awaitable awaited there), "foreign" (returns a future of another loop),
        #: "result" (returns a concurrent.futures.Future), "ready" (returns an array to
        #: block on)
        self.mode = "inside" if is_async_callable(fn) else "plain"
        if self.mode == "inside" or "asyncio" in sys.modules:
            loop.loop()  # made now, not inside the timed first call (see installed())

    @property
    def awaits(self) -> bool:
        """Whether this variant's calls are awaited (known after :meth:`first`)."""
        return self.mode != "plain"

    def args(self) -> tuple[Any, ...]:
        """Run ``setup`` (if any): ``(value,)`` to pass to ``fn``, or ``()``."""
        if self.setup is None:
            return ()
        value = self.setup()
        return () if value is None else (value,)

    def first(self, args: tuple[Any, ...]) -> Any:
        """The first call: ``fn(*args)`` made and awaited as its return value requires;
        fixes how later calls are made. Raises :class:`DeferredOutput` for a lazy output."""
        if self.mode == "inside":
            out = self._loop.call(self.fn, args, self.name)
        else:
            out = self._first_outside(args)
        refuse_deferred(self.name, out)
        return out

    def _first_outside(self, args: tuple[Any, ...]) -> Any:
        with warnings.catch_warnings(record=True) as seen, self._loop.installed():
            warnings.simplefilter("always")
            try:
                out = self.fn(*args)
            except RuntimeError as exc:
                if _NO_RUNNING_LOOP not in str(exc):
                    _replay(seen)
                    raise
                # asyncio.create_task / get_running_loop: needs a running loop; what the
                # attempt made (a coroutine it could not schedule) is dropped unawaited
                out = None
                retry = True
            else:
                retry = False
        if retry:
            _replay([w for w in seen if not _never_awaited(w)])
            self.mode = "inside"
            return self._loop.call(self.fn, self.args() if self.setup else args, self.name)
        _replay(seen)
        if _is_thread_future(out):
            self.mode = "result"
            return out.result()
        if callable(getattr(out, "block_until_ready", None)):
            self.mode = "ready"
            out.block_until_ready()
            return out
        if not inspect.isawaitable(out):
            return out
        import asyncio

        if isinstance(out, asyncio.Future) and out.get_loop() is not self._loop.loop():
            self.mode = "foreign"
        else:
            self.mode = "inside"
        return self._loop.run(out, self.name)

    def prepared(self, args: tuple[Any, ...]) -> Callable[[], Any]:
        """A zero-argument callable making one call with ``args`` (from :meth:`args`), as
        the timer times it: ``fn`` itself for a plain variant without setup value."""
        fn, name, loop = self.fn, self.name, self._loop
        if self.mode == "plain":
            return functools.partial(fn, *args) if args else fn
        if self.mode == "inside":
            return lambda: loop.call(fn, args, name)
        if self.mode == "result":
            return lambda: fn(*args).result()
        if self.mode == "ready":
            return lambda: _ready(fn(*args))
        return lambda: loop.run(fn(*args), name)

    def once(self) -> Any:
        """One complete call with a fresh setup, untimed: its output."""
        return self.prepared(self.args())()


def _is_thread_future(value: object) -> bool:
    """A ``concurrent.futures.Future`` (never imports the module to find out)."""
    module = sys.modules.get("concurrent.futures")
    return module is not None and isinstance(value, module.Future)


def _ready(value: Any) -> Any:
    value.block_until_ready()
    return value


def _never_awaited(message: warnings.WarningMessage) -> bool:
    return issubclass(message.category, RuntimeWarning) and "never awaited" in str(
        message.message)


def _replay(seen: list[warnings.WarningMessage]) -> None:
    """Issue again the warnings a first call raised while they were being recorded."""
    for w in seen:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
