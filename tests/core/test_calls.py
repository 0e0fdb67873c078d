"""How one call of a variant is made (pytest_hwopt.core.calls): awaitables are awaited,
lazy iterators refused, a setup's value passed in.

No timing here: the awaitables finish at once (``asyncio.sleep(0)``), and what is checked
is which work ran, on which loop, and what the errors say.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import warnings

import pytest

from pytest_hwopt.core.calls import (
    Caller,
    DeferredOutput,
    EventLoop,
    check_callable,
    deferred_in,
    is_async_callable,
    refuse_deferred,
)


async def score(n=3):
    await asyncio.sleep(0)
    return n * 2


def gen():
    yield 1
    yield 2


@pytest.fixture
def loop():
    made = EventLoop()
    yield made
    made.close()


def calls_of(caller, times=3):
    """The first call, then ``times`` later calls as the engine makes them."""
    out = [caller.first(caller.args())]
    out += [caller.prepared(caller.args())() for _ in range(times)]
    return out


# ---- what is an async callable -----------------------------------------------------------

class AsyncCallable:
    async def __call__(self):
        return await score(1)


def test_async_callables_are_recognised_before_any_call():
    assert is_async_callable(score)
    assert is_async_callable(functools.partial(score, 4))
    assert is_async_callable(AsyncCallable())
    assert not is_async_callable(lambda: score(1))  # known only from what it returns
    assert not is_async_callable(len)


# ---- awaitables are awaited ----------------------------------------------------------------

def test_async_def_passed_directly_is_awaited(loop):
    caller = Caller("async", score, None, loop)
    assert calls_of(caller) == [6, 6, 6, 6]
    assert caller.awaits


def test_coroutine_returned_by_a_lambda_is_awaited(loop):
    caller = Caller("lambda", lambda: score(5), None, loop)
    assert calls_of(caller) == [10, 10, 10, 10]
    assert caller.awaits


def test_later_calls_run_inside_the_engines_loop(loop):
    seen = []

    async def where():
        seen.append(asyncio.get_running_loop())
        return 1

    caller = Caller("where", lambda: where(), None, loop)
    calls_of(caller, 2)
    assert seen == [loop.loop()] * 3


def test_future_made_by_ensure_future_is_awaited_on_the_engines_loop(loop):
    """The engine's loop is the current one during the first call, so the future is made
    there (no "no current event loop" warning, no loop made behind the scenes)."""
    made_on = []

    def future():
        fut = asyncio.ensure_future(score(2))
        made_on.append(fut.get_loop())
        return fut

    caller = Caller("future", future, None, loop)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calls_of(caller) == [4, 4, 4, 4]
    assert made_on == [loop.loop()] * 4
    assert caller.awaits


def test_create_task_needs_a_running_loop_and_gets_one(loop):
    """``asyncio.create_task`` outside a loop raises; the first call is made again inside
    the engine's loop, and no "never awaited" warning is left behind."""
    caller = Caller("task", lambda: asyncio.create_task(score(3)), None, loop)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calls_of(caller) == [6, 6, 6, 6]


def test_future_completed_by_a_callback_is_awaited(loop):
    def later():
        fut = asyncio.get_event_loop().create_future()
        fut.get_loop().call_soon(fut.set_result, "done")
        return fut

    caller = Caller("callback", later, None, loop)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calls_of(caller) == ["done"] * 4


def test_object_with_await_is_awaited(loop):
    class Awaitable:
        def __await__(self):
            return score(7).__await__()

    assert calls_of(Caller("custom", Awaitable, None, loop)) == [14] * 4


def test_thread_future_is_waited_for(loop):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        caller = Caller("thread", lambda: pool.submit(sum, [1, 2]), None, loop)
        assert calls_of(caller) == [3] * 4
        assert caller.awaits


def test_array_computed_asynchronously_is_waited_for(loop):
    class Deferred:  # as a JAX array: the value exists once block_until_ready() returns
        ready = 0

        def block_until_ready(self):
            Deferred.ready += 1
            return self

    caller = Caller("jax-like", Deferred, None, loop)
    calls_of(caller, 2)
    assert Deferred.ready == 3 and caller.awaits


def test_plain_variant_is_called_as_it_is(loop):
    fn = functools.partial(sum, [1, 2])
    caller = Caller("plain", fn, None, loop)
    assert calls_of(caller) == [3] * 4
    assert caller.prepared(()) is fn  # no wrapper around what the timer times
    assert not caller.awaits


def test_asyncio_run_inside_a_plain_variant_still_works(loop):
    """The workaround many use today: the call runs its own loop; no engine loop needed."""
    caller = Caller("run", lambda: asyncio.run(score(1)), None, loop)
    assert calls_of(caller) == [2] * 4
    assert not caller.awaits


def test_measuring_inside_a_running_loop_is_a_clear_error(loop):
    caller = Caller("nested", lambda: score(1), None, loop)

    async def inside():
        return caller.first(())

    with pytest.raises(RuntimeError, match="'nested'.*inside a running event loop"):
        asyncio.run(inside())


def test_a_future_of_another_loop_is_awaited_on_that_loop(loop):
    other = asyncio.new_event_loop()
    try:
        caller = Caller("other", lambda: asyncio.ensure_future(score(4), loop=other), None,
                        loop)
        assert calls_of(caller) == [8] * 4
        assert caller.mode == "foreign"
    finally:
        other.close()


def test_the_current_loop_is_left_as_it_was(loop):
    mine = asyncio.new_event_loop()
    asyncio.set_event_loop(mine)
    try:
        calls_of(Caller("plain", lambda: 1, None, loop), 1)
        assert asyncio.get_event_loop() is mine
    finally:
        asyncio.set_event_loop(None)
        mine.close()
    calls_of(Caller("plain", lambda: 1, None, loop), 1)
    with pytest.raises(RuntimeError):  # none set before, none after
        asyncio.get_event_loop_policy().get_event_loop()


def test_close_cancels_pending_tasks_and_allows_a_new_loop():
    loop = EventLoop()

    async def leaves_a_task():
        asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        return 1

    assert Caller("leaky", leaves_a_task, None, loop).first(()) == 1
    first = loop.loop()
    loop.close()
    assert first.is_closed()
    loop.close()  # idempotent
    assert loop.loop() is not first
    loop.close()


# ---- setup -------------------------------------------------------------------------------

def test_setup_value_is_passed_and_made_fresh_for_every_call(loop):
    made = itertools.count()
    caller = Caller("sort", lambda data: (data.sort(), data)[1],
                    lambda: [3, 1, next(made)], loop)
    outputs = calls_of(caller)
    assert outputs == [[0, 1, 3], [1, 1, 3], [1, 2, 3], [1, 3, 3]]


def test_setup_returning_none_leaves_the_call_without_arguments(loop):
    ran = []
    caller = Caller("reset", lambda: len(ran), lambda: ran.append("setup"), loop)
    assert calls_of(caller, 2) == [1, 2, 3]


def test_setup_with_an_async_variant(loop):
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    assert calls_of(Caller("async-setup", double, lambda: 21, loop)) == [42] * 4


# ---- lazy iterators are refused ----------------------------------------------------------

@pytest.mark.parametrize(("make", "what"), [
    (lambda: gen(), "a generator"),
    (lambda: (x * 2 for x in range(3)), "a generator"),
    (lambda: map(str, range(3)), "a map object"),
    (lambda: filter(None, range(3)), "a filter object"),
    (lambda: zip("ab", "cd"), "a zip object"),
    (lambda: iter([1, 2]), "a list_iterator object"),
    (lambda: itertools.count(), "a count object"),
    (lambda: reversed([1, 2]), "a list_reverseiterator object"),
])
def test_lazy_iterators_are_refused_with_the_fix(loop, make, what):
    caller = Caller("lazy", make, None, loop)
    with pytest.raises(DeferredOutput) as err:
        caller.first(())
    message = str(err.value)
    assert f"variant 'lazy' returned {what}" in message
    assert "lambda: list(gen())" in message


def test_async_generator_is_refused_with_its_fix(loop):
    async def agen():
        yield 1

    with pytest.raises(DeferredOutput, match=r"async generator.*\[x async for x in agen\(\)\]"):
        Caller("agen", lambda: agen(), None, loop).first(())


def test_coroutine_resolving_to_a_generator_is_refused(loop):
    async def lazy():
        return gen()

    with pytest.raises(DeferredOutput, match="'lazy' returned a generator"):
        Caller("lazy", lazy, None, loop).first(())


def test_deferred_values_inside_containers_are_found():
    assert deferred_in((1, [2, gen()])) == ("[1][1]", "a generator", True)
    assert deferred_in({"a": 1, "b": map(str, "x")}) == ("['b']", "a map object", True)
    assert deferred_in(("text", b"bytes", range(3), {"k": [1.0]})) is None
    coro = score()
    assert deferred_in([coro]) == ("[0]", "a coroutine", False)
    coro.close()


def test_output_holding_a_coroutine_is_refused_and_the_coroutine_closed():
    coro = score()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "never awaited" warning
        with pytest.raises(DeferredOutput, match=r"holding a coroutine at \[1\].*gather"):
            refuse_deferred("pair", (1, coro))
    assert coro.cr_frame is None  # closed


# ---- what measure() refuses before any call ----------------------------------------------

def test_coroutine_passed_instead_of_a_function():
    coro = score()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=r"a coroutine.*lambda: work\(\)"):
            check_callable("c", coro)


def test_generator_or_generator_function_passed():
    with pytest.raises(DeferredOutput, match=r"'g'.*lambda: list\(gen\(\)\)"):
        check_callable("g", gen)
    with pytest.raises(DeferredOutput, match="not a callable"):
        check_callable("g", gen())
    with pytest.raises(TypeError, match="must be callable, got int"):
        check_callable("n", 3)
