"""A load generator for OpenAI-compatible servers: streamed completions on a schedule.

:func:`run_load` sends one request per entry of a send schedule
(:func:`pytest_hwopt.core.serving.send_schedule`) to ``/v1/completions`` or
``/v1/chat/completions`` of a server (vLLM, ``transformers serve``, ...), streams each
response, and returns the clock readings of every request as
:class:`~pytest_hwopt.core.serving.RequestRecord`\\ s; the figures are
:func:`pytest_hwopt.core.serving.summarize`'s.

One asyncio event loop and one ``aiohttp.ClientSession`` (no connection limit) carry the
whole run. A single dispatcher walks the schedule: it sleeps until shortly before the next
send time, then yields to the loop until the time has come (the loop keeps reading
responses meanwhile), and starts that request's task. The objects alive before the run
are kept out of the garbage collector's passes during it (``gc.freeze``, as vLLM's
benchmark does), so that a large heap does not stall the sends. Each task records when it
started (``released_s``: the client's own lag is ``released_s - scheduled_s``), waits for a
concurrency slot when ``max_concurrency`` is set (that wait counts in the latencies, which
run from the scheduled time, but not in the client's lag), then sends (``sent_s``: when
aiohttp has written the request headers) and reads the stream.

A request's failure never raises: an HTTP status other than 200 (its status and the body's
first 200 characters), a timeout, a stream that ends early, malformed JSON in the stream or
an error event from the server become the record's ``error``. Only a server that does not
answer at all raises, before the run: :class:`ServerUnreachable`.

Only imported for a serve run: aiohttp is not needed to load the plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiohttp

from pytest_hwopt.core.served import ENDPOINTS
from pytest_hwopt.core.serving import (
    RequestRecord,
    Slo,
    Summary,
    output_token_count,
    summarize,
)

Endpoint = Literal["completions", "chat"]
Clock = Callable[[], float]

#: the dispatcher sleeps until this long before a send time, then yields to the loop until
#: it: asyncio's timers wake up to ~1 ms late (epoll waits in whole milliseconds)
SPIN_S: Final = 0.0011
#: the schedule's offset 0 lies this long after the run is set up, so the first send is on time
LEAD_S: Final = 0.005
#: characters of an error body kept in a record's error
BODY_CHARS: Final = 200


class ServerUnreachable(ConnectionError):
    """No server answers at the URL: connection refused, unknown host, connect timeout."""


@dataclass(frozen=True)
class ServerProbe:
    """The check made before the run: ``GET <base>/v1/models``.

    ``url``: what was asked; ``status``: its HTTP status; ``elapsed_s``: how long it took;
    ``models``: the model ids it listed (empty if it did not answer 200 with a list).
    """

    url: str
    status: int
    elapsed_s: float
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadRun:
    """A finished load run.

    ``records``: one per scheduled request, in schedule order; ``started_s``: the first
    scheduled send, ``finished_s``: the last request's end (s, the run's clock; together
    the duration :func:`~pytest_hwopt.core.serving.summarize` divides by);
    ``client_cpu_s``: this process's CPU time (``time.process_time``, all its threads)
    during the run; ``url``: the endpoint; ``model``: the model asked for; ``probe``: the
    check before the run.
    """

    records: tuple[RequestRecord, ...]
    started_s: float
    finished_s: float
    client_cpu_s: float
    url: str
    model: str
    probe: ServerProbe

    def summary(self, slo: Slo | None = None) -> Summary:
        """:func:`~pytest_hwopt.core.serving.summarize` of this run."""
        return summarize(self.records, self.started_s, self.finished_s, slo=slo)


def endpoint_url(base_url: str, endpoint: Endpoint) -> str:
    """The endpoint's URL under ``base_url`` (``http://host:port``, with or without a
    trailing ``/v1``). Raises ``ValueError`` for an unknown endpoint."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
    return _base(base_url) + ENDPOINTS[endpoint]


def _base(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


def run_load(base_url: str, *, prompts: Sequence[str], schedule: Sequence[float],
             max_concurrency: int | None = None, max_tokens: int = 16,
             model: str | None = None, endpoint: Endpoint = "completions",
             timeout_s: float = 60.0, connect_timeout_s: float = 3.0,
             clock: Clock = time.perf_counter) -> LoadRun:
    """Send ``len(schedule)`` streamed requests at ``schedule``'s offsets (s from the run's
    start) and record each one; blocks until every request has ended.

    Request ``i`` sends ``prompts[i % len(prompts)]`` with ``max_tokens``, greedy
    (``temperature`` 0), ``stream`` and ``stream_options.include_usage``; ``endpoint``
    ``"chat"`` sends it as one user message. ``model`` None takes the first model the
    server lists at ``/v1/models`` (``transformers serve`` needs a model in every request;
    pass it unless the server is pinned to one). At most ``max_concurrency`` requests are
    in flight (None: no limit). ``timeout_s`` bounds each request from its send to its
    last byte; ``connect_timeout_s`` the check before the run. ``clock`` (s) reads every
    time of the run.

    Raises :class:`ServerUnreachable` at once when nothing answers at ``base_url``,
    ``ValueError`` for invalid arguments or when ``model`` is None and the server lists no
    model. Must not be called from a running event loop (then await :func:`load`).
    """
    return asyncio.run(load(
        base_url, prompts=prompts, schedule=schedule, max_concurrency=max_concurrency,
        max_tokens=max_tokens, model=model, endpoint=endpoint, timeout_s=timeout_s,
        connect_timeout_s=connect_timeout_s, clock=clock))


async def load(base_url: str, *, prompts: Sequence[str], schedule: Sequence[float],
               max_concurrency: int | None = None, max_tokens: int = 16,
               model: str | None = None, endpoint: Endpoint = "completions",
               timeout_s: float = 60.0, connect_timeout_s: float = 3.0,
               clock: Clock = time.perf_counter) -> LoadRun:
    """:func:`run_load` in the running event loop."""
    url = endpoint_url(base_url, endpoint)
    _check_arguments(prompts, schedule, max_concurrency, max_tokens, timeout_s)
    sent_at: Callable[..., Any] = _headers_sent(clock)
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(sent_at)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
        probe = await _probe(session, base_url, url, connect_timeout_s, clock)
        if model is None:
            if not probe.models:
                raise ValueError(f"no model given and {probe.url} lists none "
                                 f"(HTTP {probe.status}): pass model=")
            model = probe.models[0]
        run = _Run(session=session, url=url, clock=clock,
                   bodies=[_body(endpoint, model, p, max_tokens) for p in prompts],
                   chat=endpoint == "chat", timeout=aiohttp.ClientTimeout(total=timeout_s),
                   timeout_s=timeout_s,
                   slots=asyncio.Semaphore(max_concurrency) if max_concurrency else None)
        # what is alive now (a test session, a model) is left out of the collections during
        # the run: a full collection of a large heap would stall the sends for milliseconds
        gc.freeze()
        try:
            cpu0 = time.process_time()
            start = clock() + LEAD_S
            records = await _dispatch(run, [start + t for t in schedule])
            cpu = time.process_time() - cpu0
        finally:
            gc.unfreeze()
    return LoadRun(records=tuple(records), started_s=start + min(schedule),
                   finished_s=max(r.end_s for r in records), client_cpu_s=cpu, url=url,
                   model=model, probe=probe)


def _check_arguments(prompts: Sequence[str], schedule: Sequence[float],
                     max_concurrency: int | None, max_tokens: int, timeout_s: float) -> None:
    if not prompts:
        raise ValueError("no prompts to send")
    if not schedule:
        raise ValueError("an empty schedule: no request to send")
    if any(not (t >= 0.0 and t != float("inf")) for t in schedule):
        raise ValueError("schedule offsets must be finite and >= 0 s")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1 (or None), got {max_concurrency}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")


def _body(endpoint: Endpoint, model: str, prompt: str, max_tokens: int) -> bytes:
    """The request body, encoded once per prompt before the run."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0,
                            "stream": True, "stream_options": {"include_usage": True}}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return json.dumps(body).encode()


def _headers_sent(clock: Clock) -> Callable[..., Any]:
    """A trace hook appending the clock's reading to the request's ``trace_request_ctx``
    (a list) once aiohttp has written the request's headers."""
    async def hook(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
        times = context.trace_request_ctx
        if isinstance(times, list):
            times.append(clock())
    return hook


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in words ("Connection refused")."""
    if isinstance(exc, asyncio.TimeoutError):
        return "connect timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.errno, int) and exc.errno > 0:
            return os.strerror(exc.errno)  # ECONNREFUSED: "Connection refused"
        return exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
    return str(exc) or type(exc).__name__


async def _probe(session: aiohttp.ClientSession, base_url: str, url: str, connect_s: float,
                 clock: Clock) -> ServerProbe:
    """``GET /v1/models``: any HTTP answer means a server is there; its model ids."""
    models_url = _base(base_url) + "/v1/models"
    timeout = aiohttp.ClientTimeout(total=max(10.0, connect_s), connect=connect_s)
    t0 = clock()
    try:
        async with session.get(models_url, timeout=timeout) as resp:
            status = resp.status
            data = await resp.read()
    except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as exc:
        raise ServerUnreachable(f"no server answers at {url}: {_reason(exc)}") from exc
    return ServerProbe(url=models_url, status=status, elapsed_s=clock() - t0,
                       models=_model_ids(data) if status == 200 else ())


def _model_ids(data: bytes) -> tuple[str, ...]:
    """The ids of an OpenAI model list (``{"data": [{"id": ...}, ...]}``); () otherwise."""
    try:
        doc = json.loads(data)
    except ValueError:
        return ()
    entries = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return ()
    return tuple(e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str))


@dataclass
class _Run:
    """What every request of a run shares."""

    session: aiohttp.ClientSession
    url: str
    clock: Clock
    bodies: list[bytes]
    chat: bool
    timeout: aiohttp.ClientTimeout
    timeout_s: float
    slots: asyncio.Semaphore | None
    headers: dict[str, str] = field(default_factory=lambda: {
        "Content-Type": "application/json", "Accept": "text/event-stream"})


async def _wait_until(at: float, clock: Clock) -> None:
    """Return at ``at`` (the clock's s): sleep until :data:`SPIN_S` before, then yield to
    the loop (which keeps serving the other tasks) until the time has come."""
    while True:
        left = at - clock()
        if left <= 0.0:
            return
        await asyncio.sleep(left - SPIN_S if left > SPIN_S else 0)


async def _dispatch(run: _Run, times: list[float]) -> list[RequestRecord]:
    """Start request ``i``'s task at ``times[i]`` (in time order); all their records."""
    tasks: dict[int, asyncio.Task[RequestRecord]] = {}
    try:
        for i in sorted(range(len(times)), key=times.__getitem__):
            await _wait_until(times[i], run.clock)
            tasks[i] = asyncio.create_task(_request(run, i, times[i]))
        return list(await asyncio.gather(*(tasks[i] for i in range(len(times)))))
    finally:
        for task in tasks.values():
            task.cancel()


class _StreamFailed(Exception):
    """The stream broke or said something it should not."""


@dataclass
class _Stream:
    """What a response's stream has said so far."""

    chunks: list[float] = field(default_factory=list)
    usage: int | None = None
    finished: bool = False  # a choice gave its finish_reason
    done: bool = False  # data: [DONE]
    events: int = 0  # data: lines
    end: float | None = None


async def _request(run: _Run, index: int, scheduled: float) -> RequestRecord:
    """Send request ``index`` and read its stream; never raises for its failure."""
    clock = run.clock
    released = clock()
    prompt = index % len(run.bodies)
    sent: list[float] = []
    stream = _Stream()
    error: str | None = None
    async with run.slots if run.slots is not None else contextlib.nullcontext():
        try:
            async with run.session.post(run.url, data=run.bodies[prompt], headers=run.headers,
                                        timeout=run.timeout, trace_request_ctx=sent) as resp:
                if resp.status != 200:
                    text = await resp.text(errors="replace")
                    error = f"HTTP {resp.status}: {text[:BODY_CHARS]}"
                else:
                    await _read(resp, stream, run.chat, clock)
        except _StreamFailed as exc:
            error = str(exc)
        except asyncio.TimeoutError:
            error = (f"timed out after {run.timeout_s:g} s "
                     f"({len(stream.chunks)} content chunks received)")
        except aiohttp.ClientPayloadError as exc:
            error = f"broken stream after {len(stream.chunks)} content chunks: {exc}"
        except aiohttp.ServerDisconnectedError:
            error = (f"broken stream: the server closed the connection after "
                     f"{len(stream.chunks)} content chunks")
        except (aiohttp.ClientError, OSError) as exc:
            error = f"connection failed: {_reason(exc)}"
        if stream.done:
            error = None  # whatever happened after [DONE] does not undo the response
        end = stream.end if stream.end is not None and error is None else clock()
    return RequestRecord(
        index=index, prompt_index=prompt, scheduled_s=scheduled,
        sent_s=sent[0] if sent else None, chunk_s=tuple(stream.chunks), end_s=end,
        output_tokens=output_token_count(stream.usage, len(stream.chunks)),
        error=error, usage_tokens=stream.usage, released_s=released)


async def _read(resp: aiohttp.ClientResponse, stream: _Stream, chat: bool,
                clock: Clock) -> None:
    """Read a server-sent-event stream of completion chunks into ``stream``, to its end.

    Complete: ``data: [DONE]`` (OpenAI, vLLM), or the body's clean end after a chunk that
    gave a ``finish_reason`` (``transformers serve`` sends no ``[DONE]``). The stream is
    read to its end after ``[DONE]`` too, so that the connection can be reused. Raises
    :class:`_StreamFailed` for an early end, bad JSON or an error event.
    """
    async for raw in resp.content:
        now = clock()
        if stream.done:
            continue
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue  # blank lines between events, comments, event:/id:/retry: fields
        data = line[5:].strip()
        stream.events += 1
        if data == b"[DONE]":
            stream.done = True
            stream.end = now
            continue
        _chunk(data, stream, chat, now)
    if not stream.done:
        if not stream.events:
            raise _StreamFailed(f"not an event stream: no data: line in the response "
                                f"(Content-Type {resp.content_type})")
        if not stream.finished:
            raise _StreamFailed(f"broken stream: the response ended before [DONE] after "
                                f"{len(stream.chunks)} content chunks")
        stream.end = clock()


def _chunk(data: bytes, stream: _Stream, chat: bool, now: float) -> None:
    """One ``data:`` payload of the stream, received at ``now``."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise _StreamFailed(f"bad JSON in the stream: {data[:BODY_CHARS]!r}") from None
    if not isinstance(doc, dict):
        raise _StreamFailed(f"bad chunk in the stream (not an object): {data[:BODY_CHARS]!r}")
    if "error" in doc:
        raise _StreamFailed(f"the server sent an error in the stream: "
                            f"{str(doc['error'])[:BODY_CHARS]}")
    choices = doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        if chat:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
        else:
            text = choice.get("text")
        if text:
            stream.chunks.append(now)
        if choice.get("finish_reason"):
            stream.finished = True
    usage = doc.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        stream.usage = usage["completion_tokens"]
