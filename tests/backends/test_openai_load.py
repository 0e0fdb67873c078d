"""The load generator against a small in-process OpenAI-style server (aiohttp.web, its own
thread and event loop) that streams chunks with controlled delays."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("aiohttp")
from aiohttp import web

from pytest_hwopt.backends.openai_load import ServerUnreachable, run_load
from pytest_hwopt.core.serving import first_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Server:
    """A running test server: its URL, the bodies it received, its concurrency peak."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    peak: int = 0


def _chunk(text: str, *, chat: bool = False, finish: str | None = None,
           usage: int | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    doc: dict[str, Any] = {"object": "text_completion", "choices": [choice]}
    if usage is not None:
        doc["usage"] = {"prompt_tokens": 3, "completion_tokens": usage,
                        "total_tokens": 3 + usage}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


async def _open(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


def streaming(delays: list[float], *, usage: int | None = None, done: bool = True,
              chat: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler streaming one content chunk after each delay (s), then a final chunk
    with finish_reason (and usage), then ``[DONE]`` unless ``done`` is False."""
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await _open(request)
        for n, delay in enumerate(delays):
            await asyncio.sleep(delay)
            await resp.write(_chunk(f"t{n}", chat=chat))
        await resp.write(_chunk("", chat=chat, finish="length", usage=usage))
        if done:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
    return handler


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    """Start a server whose completion endpoints answer with ``handler``; stopped after."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    def start(handler: Handler) -> Server:
        server = Server(url="")

        async def completion(request: web.Request) -> web.StreamResponse:
            server.bodies.append(await request.json())
            server.active += 1
            server.peak = max(server.peak, server.active)
            try:
                return await handler(request)
            finally:
                server.active -= 1

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "tiny-model"}]})

        async def up() -> str:
            app = web.Application()
            app.router.add_post("/v1/completions", completion)
            app.router.add_post("/v1/chat/completions", completion)
            app.router.add_get("/v1/models", models)
            runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5,
                                   access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            runners.append(runner)
            return f"http://127.0.0.1:{runner.addresses[0][1]}"

        server.url = asyncio.run_coroutine_threadsafe(up(), loop).result(10)
        return server

    yield start
    for runner in runners:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_ttft_itl_usage_and_request_body(serve: Callable[[Handler], Server]) -> None:
    server = serve(streaming([0.05, 0.02, 0.02, 0.02], usage=8))
    run = run_load(server.url, prompts=["a", "b"], schedule=[0.0, 0.01, 0.02],
                   max_tokens=8, model="m", timeout_s=10)
    assert [r.index for r in run.records] == [0, 1, 2]
    for rec in run.records:
        assert rec.ok, rec.error
        assert len(rec.chunk_s) == 4
        assert rec.usage_tokens == 8 and rec.output_tokens == 8
        # bounds wide enough for a busy machine: chunks read together have gaps near 0
        assert rec.ttft_s is not None and 0.045 <= rec.ttft_s <= 1.0
        assert all(0.0 <= g <= 0.5 for g in rec.itl_s) and sum(rec.itl_s) >= 0.03
        assert rec.released_s is not None and rec.released_s >= rec.scheduled_s
        assert rec.sent_s is not None and rec.sent_s >= rec.released_s
        assert rec.end_s >= rec.chunk_s[-1]
    assert [r.prompt_index for r in run.records] == [0, 1, 0]
    assert sorted(b["prompt"] for b in server.bodies) == ["a", "a", "b"]
    body = server.bodies[0]
    assert body["model"] == "m" and body["max_tokens"] == 8 and body["temperature"] == 0
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert run.started_s == run.records[0].scheduled_s
    assert run.finished_s == max(r.end_s for r in run.records)
    assert run.client_cpu_s > 0 and run.probe.status == 200
    summary = run.summary()
    assert summary["completed"] == 3 and summary["failed"] == 0
    assert 45.0 <= float(summary["ttft_p50_ms"]) <= 1000.0


def test_chat_without_usage_or_done_and_the_listed_model(
        serve: Callable[[Handler], Server]) -> None:
    """``transformers serve`` ends its stream after the finish_reason chunk, no [DONE]."""
    server = serve(streaming([0.0, 0.01], done=False, chat=True))
    run = run_load(server.url + "/v1/", prompts=["hello"], schedule=[0.0], model=None,
                   endpoint="chat", timeout_s=10)
    rec = run.records[0]
    assert rec.ok, rec.error
    assert rec.usage_tokens is None and rec.output_tokens == 2
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "hello"}]
    assert server.bodies[0]["model"] == "tiny-model" == run.model
    assert run.url == server.url + "/v1/chat/completions"


def test_http_error_is_a_failed_request_with_its_text(
        serve: Callable[[Handler], Server]) -> None:
    async def fail(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="model exploded " + "x" * 300)

    run = run_load(serve(fail).url, prompts=["p"], schedule=[0.0, 0.0], model="m")
    assert all(not r.ok for r in run.records)
    error = run.records[0].error
    assert error is not None and error.startswith("HTTP 500: model exploded")
    assert len(error) == len("HTTP 500: ") + 200
    summary = run.summary()
    assert summary["failed"] == 2 and summary["completed"] == 0
    assert first_error(run.records) == f"request 0: {error}"


def test_broken_streams_are_failed_requests(serve: Callable[[Handler], Server]) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = await _open(request)
        await resp.write(_chunk("one"))
        await asyncio.sleep(0.02)
        assert request.transport is not None
        request.transport.close()
        return resp

    async def short(request: web.Request) -> web.StreamResponse:
        resp = await _open(request)
        await resp.write(_chunk("one"))
        await resp.write_eof()  # a clean end, but no finish_reason and no [DONE]
        return resp

    async def garbled(request: web.Request) -> web.StreamResponse:
        resp = await _open(request)
        await resp.write(b"data: {not json\n\n")
        await resp.write_eof()
        return resp

    async def oom(request: web.Request) -> web.StreamResponse:
        resp = await _open(request)
        await resp.write(b'data: {"error": "CUDA out of memory"}\n\n')
        await resp.write_eof()
        return resp

    async def plain(request: web.Request) -> web.StreamResponse:
        return web.json_response({"choices": [{"text": "all at once"}]})

    for handler, words in ((cut, "broken stream"), (short, "ended before [DONE]"),
                           (garbled, "bad JSON"),
                           (oom, "the server sent an error in the stream: CUDA out of memory"),
                           (plain, "not an event stream: no data: line in the response "
                                   "(Content-Type application/json)")):
        rec = run_load(serve(handler).url, prompts=["p"], schedule=[0.0], model="m",
                       timeout_s=5).records[0]
        assert not rec.ok and rec.error is not None and words in rec.error, rec.error


def test_an_unclean_close_after_done_is_no_failure(serve: Callable[[Handler], Server]) -> None:
    async def done_then_cut(request: web.Request) -> web.StreamResponse:
        resp = await _open(request)
        await resp.write(_chunk("one") + _chunk("", finish="stop", usage=1) + b"data: [DONE]\n\n")
        await asyncio.sleep(0.02)
        assert request.transport is not None
        request.transport.close()
        return resp

    rec = run_load(serve(done_then_cut).url, prompts=["p"], schedule=[0.0], model="m",
                   timeout_s=5).records[0]
    assert rec.ok, rec.error
    assert rec.output_tokens == 1 and rec.end_s < rec.scheduled_s + 0.02 + 0.5


def test_timeout_is_a_failed_request(serve: Callable[[Handler], Server]) -> None:
    server = serve(streaming([1.5]))
    t0 = time.perf_counter()
    rec = run_load(server.url, prompts=["p"], schedule=[0.0], model="m",
                   timeout_s=0.3).records[0]
    assert time.perf_counter() - t0 < 1.2
    assert rec.error is not None and rec.error.startswith("timed out after 0.3 s")


def test_nothing_listening_raises_at_once_naming_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(ServerUnreachable, match=f"no server answers at {url}/v1/completions"):
        run_load(url, prompts=["p"], schedule=[0.0], model="m")
    assert time.perf_counter() - t0 < 2.0


def test_max_concurrency_is_respected(serve: Callable[[Handler], Server]) -> None:
    server = serve(streaming([0.05]))
    run = run_load(server.url, prompts=["p"], schedule=[0.0] * 12, max_concurrency=3,
                   model="m", timeout_s=10)
    assert all(r.ok for r in run.records)
    assert server.peak == 3


def test_queueing_behind_the_concurrency_limit_counts_as_latency(
        serve: Callable[[Handler], Server]) -> None:
    """Coordinated omission: one request at a time, 100 ms each, one scheduled every
    20 ms: request k waits about 80 ms * k, and its TTFT says so."""
    server = serve(streaming([0.1]))
    run = run_load(server.url, prompts=["p"], schedule=[0.02 * k for k in range(6)],
                   max_concurrency=1, model="m", timeout_s=10)
    ttft = [r.ttft_s for r in run.records]
    assert all(t is not None for t in ttft)
    assert all(b > a for a, b in zip(ttft, ttft[1:]))  # type: ignore[operator]
    assert ttft[-1] is not None and ttft[-1] > 0.1 + 0.8 * 0.08 * 5
    # the wait was the server's queue, not the client's lag
    assert all(r.send_lag_s is not None and r.send_lag_s < 0.1 for r in run.records)
    last = run.records[-1]
    assert last.sent_s is not None and last.sent_s - last.scheduled_s > 0.3


def test_requests_are_released_on_schedule(serve: Callable[[Handler], Server]) -> None:
    server = serve(streaming([0.0]))
    schedule = [0.005 * k for k in range(60)]  # 200 requests/s
    run = run_load(server.url, prompts=["p"], schedule=schedule, model="m", timeout_s=10)
    assert all(r.ok for r in run.records)
    lags = [r.send_lag_s for r in run.records]
    assert all(lag is not None and 0.0 <= lag < 0.2 for lag in lags)  # never early


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prompts": []}, "no prompts"),
    ({"schedule": []}, "empty schedule"),
    ({"schedule": [0.0, -1.0]}, "schedule offsets"),
    ({"schedule": [float("nan")]}, "schedule offsets"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"timeout_s": 0.0}, "timeout_s"),
    ({"endpoint": "embeddings"}, "endpoint"),
])
def test_invalid_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"prompts": ["p"], "schedule": [0.0], "model": "m", **kwargs}
    with pytest.raises(ValueError, match=match):
        run_load("http://127.0.0.1:9", **args)
