"""``hwopt_server`` as a user runs it: a server for the length of one test, its URL once it is
healthy, its log in a failing test's report, and clear errors when it does not start.

The servers of the in-process sessions are a small standard-library HTTP server
(``stub_server.py``); the last test starts a real ``transformers serve`` with a tiny model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pytest_hwopt.backends.tiny_llm import save_tiny_llama, serve_command

ARGS = ("-p", "no:cacheprovider", "-p", "no:randomly")

#: answers GET /health and GET /hello, logs each request, writes its pid to pids/<port>
STUB_SERVER = r'''
import http.server, os, sys

port = int(sys.argv[1])
os.makedirs("pids", exist_ok=True)
with open(f"pids/{port}", "w") as f:
    f.write(str(os.getpid()))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        known = {"/health": b"ok", "/hello": b"hello from " + str(port).encode()}
        body = known.get(self.path, b"not found")
        self.send_response(200 if self.path in known else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("stub:", fmt % args, flush=True)


print(f"stub: serving on port {port}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''

HEADER = '''
import sys
import urllib.request
from pathlib import Path

import pytest

STUB = [sys.executable, str(Path(__file__).with_name("stub_server.py")), "{port}"]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
'''


@pytest.fixture
def stub(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makefile(".py", stub_server=STUB_SERVER)
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # the sessions' requests go to no proxy
    return pytester


def _stopped(pids: Path) -> list[str]:
    """The stub servers of a session (by port) that still run."""
    running = []
    for pid_file in pids.iterdir():
        stat = Path(f"/proc/{pid_file.read_text()}/stat")
        if stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z":
            running.append(pid_file.name)
    return running


def test_a_test_gets_the_url_of_its_healthy_server(stub: pytest.Pytester) -> None:
    stub.makepyfile(test_it=HEADER + '''
def test_one_server(hwopt_server):
    url = hwopt_server(STUB)  # returns once GET <url>/health answers 200
    assert url.startswith("http://127.0.0.1:")
    assert get(url + "/hello") == "hello from " + url.rsplit(":", 1)[1]


def test_two_servers_on_two_ports(hwopt_server):
    first, second = hwopt_server(STUB), hwopt_server(STUB, health="/hello", timeout_s=30)
    assert first != second
    assert get(second + "/health") == "ok"
''')
    result = stub.runpytest(*ARGS)
    result.assert_outcomes(passed=2)
    assert len(list((stub.path / "pids").iterdir())) == 3
    assert _stopped(stub.path / "pids") == []  # every server is stopped after its test


def test_a_failing_test_shows_the_tail_of_each_server_log(stub: pytest.Pytester) -> None:
    stub.makepyfile(test_it=HEADER + '''
def test_fails(hwopt_server):
    url = hwopt_server(STUB)
    get(url + "/hello")
    assert get(url + "/health") == "healthy"


def test_passes(hwopt_server):
    get(hwopt_server(STUB) + "/hello")
''')
    result = stub.runpytest(*ARGS)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_fails _*",
        "*AssertionError*",
        "*- hwopt_server 1 log call: http://127.0.0.1:* (running; last 30 lines of "
        "*hwopt-server-1.log) -*",
        "stub: serving on port *",
        'stub: "GET /health HTTP/1.1" 200 -',
        'stub: "GET /hello HTTP/1.1" 200 -',
        'stub: "GET /health HTTP/1.1" 200 -',
        "*short test summary*",
    ])
    assert result.stdout.str().count("hwopt_server 1 log") == 1  # not for the passing test


def test_a_server_that_fails_to_start_fails_the_test_with_its_log(
        stub: pytest.Pytester) -> None:
    stub.makepyfile(test_it=HEADER + '''
EXITS = [sys.executable, "-c",
         "import sys; print('loading model'); sys.exit('error: no model at /nowhere')",
         "--port", "{port}"]
SILENT = [sys.executable, "-c", "import time; print('still loading', flush=True); "
          "time.sleep(600)", "{port}"]


def test_exits(hwopt_server):
    hwopt_server(EXITS)


def test_never_healthy(hwopt_server):
    hwopt_server(SILENT, timeout_s=1)


def test_bad_command(hwopt_server):
    hwopt_server("python -m http.server {port}")
''')
    result = stub.runpytest(*ARGS)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*_ test_exits _*",
        "E  *ServerStartError: hwopt_server: server exited with exit code 1 after * s, "
        "before GET http://127.0.0.1:*/health answered 200 (last: *)",
        "E  *command: * -c * --port *",
        "E  *log */hwopt-server-1.log, last lines:",
        "E  *loading model",
        "E  *error: no model at /nowhere",
        "*_ test_never_healthy _*",
        "E  *ServerStartError: hwopt_server: server did not answer 200 within 1 s on GET "
        "http://127.0.0.1:*/health (last: no answer: *Connection refused*); it was stopped",
        "E  *still loading",
        "*_ test_bad_command _*",
        "E  *TypeError: hwopt_server: command must be a list of strings, the program and its "
        "arguments, got str (split a command line with shlex.split)",
    ])
    assert "server_process.py" not in result.stdout.str()  # the message, not the internals


def test_the_tiny_model_command_line() -> None:
    """What ``serve_command`` hands ``hwopt_server``: offline, on the fixture's port, one
    torch thread, a small KV cache for continuous batching unless ``extra`` sizes it."""
    command = serve_command(Path("/models/tiny"), continuous_batching=True,
                            extra=["--cb-num-blocks", "8"])
    assert command[:4] == ["env", "HF_HUB_OFFLINE=1", "HF_HUB_DISABLE_UPDATE_CHECK=1",
                           "OMP_NUM_THREADS=1"]
    assert command[5:9] == ["-m", "transformers.cli.transformers", "serve", "/models/tiny"]
    assert command[command.index("--port") + 1] == "{port}"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[-5:] == ["--continuous-batching", "--cb-max-batch-tokens", "512",
                            "--cb-num-blocks", "8"]
    assert "--no-continuous-batching" in serve_command(Path("m"), threads=None)
    assert not any(a.startswith("OMP") for a in serve_command(Path("m"), threads=None))
    with pytest.raises(ValueError, match="threads must be None or an int >= 1"):
        serve_command(Path("m"), threads=0)
    with pytest.raises(ValueError, match="extra must be a sequence of strings"):
        serve_command(Path("m"), extra="--compile")


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"vocab_size": 256}, "vocab_size must be an int >= 257"),
    ({"hidden_size": 60}, "hidden_size must be a positive multiple of 8"),
    ({"layers": 0}, "layers must be an int >= 1"),
])
def test_tiny_model_sizes_are_checked_first(tmp_path: Path, kwargs: dict[str, int],
                                           text: str) -> None:
    with pytest.raises(ValueError, match=text):
        save_tiny_llama(tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


def _serving_missing() -> str:
    missing = [name for name in ("torch", "transformers", "tokenizers", "fastapi", "uvicorn",
                                 "openai") if importlib.util.find_spec(name) is None]
    return ", ".join(missing)


#: marks the test that starts a real `transformers serve` (about 20-40 s on 2 CPU cores)
starts_real_server = pytest.mark.skipif(
    bool(_serving_missing()),
    reason=f"starts a real `transformers serve`: needs {_serving_missing()} "
           "(pip install 'transformers[serving]' torch tokenizers)")


@starts_real_server
def test_real_transformers_serve_streams_a_tiny_model(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A real OpenAI-compatible server on the CPU, with a tiny random Llama: one streamed
    completion of exactly ``max_tokens`` tokens, counted in the last chunk's ``usage``.
    In a subprocess: the session imports torch, which cannot be imported twice."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    pytester.makepyfile(test_real=r'''
import json
import urllib.request

from pytest_hwopt.backends.tiny_llm import save_tiny_llama, serve_command


def test_one_streamed_completion(hwopt_server, tmp_path):
    model = save_tiny_llama(tmp_path / "tiny-llama")
    url = hwopt_server(serve_command(model), timeout_s=180)  # healthy: the model is loaded

    body = {"model": str(model), "prompt": "Hello there", "max_tokens": 24, "stream": True,
            "stream_options": {"include_usage": True}}
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        chunks = [json.loads(line[len(b"data: "):]) for line in response
                  if line.startswith(b"data: ")]

    assert all(c["object"] == "text_completion" for c in chunks)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "length"  # no end token: exactly max_tokens
    assert last["usage"]["completion_tokens"] == 24
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 24
    assert "usage" not in chunks[0]
''')
    result = pytester.runpytest_subprocess(*ARGS, timeout=300)
    result.assert_outcomes(passed=1)
