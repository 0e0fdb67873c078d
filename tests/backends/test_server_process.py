"""Server processes for tests: a free port, a health poll, errors that show the server's log,
and a stop that leaves no process of the group behind.

The servers here are small Python programs run with ``sys.executable -c``.
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pytest_hwopt.backends import server_process
from pytest_hwopt.backends.server_process import ServerStartError, fill_port, log_tail, start

#: an HTTP server answering 200 on GET /health (and 404 elsewhere); argv[1] is the port,
#: argv[2] (optional) seconds to wait before listening
STUB = r'''
import http.server, sys, time
print("stub: starting", flush=True)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/health" else 404
        body = f"{code} {self.path}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("stub:", fmt % args, flush=True)

server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(f"stub: listening on {sys.argv[1]}", flush=True)
server.serve_forever()
'''


def stub(*extra: str) -> list[str]:
    return [sys.executable, "-c", STUB, "{port}", *extra]


def get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.read().decode()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_server_is_ready_when_its_health_path_answers_200(tmp_path: Path) -> None:
    server = start(stub("0.3"), tmp_path / "server.log", timeout_s=30)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert get(server.url + "/health") == "200 /health"
        assert "stub: listening on" in server.log_tail()
    finally:
        code = server.stop()
    assert code == -signal.SIGTERM  # http.server has no SIGTERM handler
    assert not server.running()
    assert server.stop() == code  # a second stop does nothing


def test_every_port_placeholder_becomes_the_same_free_port(tmp_path: Path) -> None:
    assert fill_port(["a", "--port={port}", "{port}:{port}"], 8123) == [
        "a", "--port=8123", "8123:8123"]
    command = [sys.executable, "-c", STUB, "{port}", "0", "--also={port}"]
    server = start(command, tmp_path / "server.log", timeout_s=30)
    try:
        assert server.argv[3] == str(server.port)
        assert server.argv[5] == f"--also={server.port}"
        assert "{port}" not in " ".join(server.argv)
    finally:
        server.stop()


def test_the_health_path_is_the_one_given(tmp_path: Path) -> None:
    """A path answering 404 is not healthy: the wait ends at the timeout, naming the 404."""
    with pytest.raises(ServerStartError) as info:
        start(stub(), tmp_path / "server.log", health="/ready", timeout_s=1.5)
    message = str(info.value)
    assert "did not answer 200 within 1.5 s" in message
    assert "/ready" in message and "404" in message
    assert "it was stopped" in message
    assert info.value.exit_code is None


def test_a_server_that_exits_at_once_raises_with_its_exit_code_and_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c",
               "import sys; print('loading model...'); print('no such model: m', file=sys.stderr);"
               " sys.exit(3)", "--port", "{port}"]
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        start(command, tmp_path / "server.log", timeout_s=60)
    assert time.monotonic() - started < 10  # not the timeout
    error = info.value
    assert error.exit_code == 3
    assert "exited with exit code 3" in str(error)
    assert "loading model..." in str(error) and "no such model: m" in str(error)
    assert error.log_tail.splitlines() == ["loading model...", "no such model: m"]
    assert error.log_path == tmp_path / "server.log"


def test_a_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    command = [sys.executable, "-c",
               "import time; print('warming up', flush=True); time.sleep(600)", "{port}"]
    with pytest.raises(ServerStartError) as info:
        start(command, tmp_path / "server.log", timeout_s=1)
    message = str(info.value)
    assert "did not answer 200 within 1 s" in message
    assert "warming up" in message
    assert "Connection refused" in message  # the last answer: nothing listens


def test_a_program_that_cannot_run_raises_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match="could not run /no/such/server"):
        start(["/no/such/server", "{port}"], tmp_path / "server.log", timeout_s=5)


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    """A server's worker outlives a SIGTERM to the server alone; stop kills the group."""
    worker_pid = tmp_path / "worker.pid"
    program = (
        "import subprocess, sys\n"
        # the worker ignores SIGTERM, as a busy worker may: only SIGKILL ends it
        "worker = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({str(worker_pid)!r}, 'w').write(str(worker.pid))\n"
        "sys.argv = ['stub', sys.argv[1]]\n"
        f"exec({STUB!r})\n")
    server = start([sys.executable, "-c", program, "{port}"], tmp_path / "server.log",
                   timeout_s=30)
    pid = int(worker_pid.read_text())
    assert alive(pid)
    server.stop(grace_s=1)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:  # SIGKILL is not instant
        time.sleep(0.05)
    assert not alive(pid)


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"command": []}, ValueError, "command is empty"),
    ({"command": ""}, TypeError, "command must be a list of strings.*shlex.split"),
    ({"command": "python -m http.server"}, TypeError, "command must be a list of strings"),
    ({"command": ["python", 8000]}, TypeError, r"command\[1\] is int 8000"),
    ({"command": [Path("python")]}, TypeError, r"command\[0\] is PosixPath"),
    ({"command": ["", "{port}"]}, ValueError, "the program, is an empty string"),
    ({"health": "health"}, ValueError, "health must be a path starting with '/'"),
    ({"health": None}, TypeError, "health must be a string"),
    ({"timeout_s": 0}, ValueError, "timeout_s must be positive and finite, got 0"),
    ({"timeout_s": -1.5}, ValueError, "timeout_s must be positive"),
    ({"timeout_s": float("inf")}, ValueError, "timeout_s must be positive and finite"),
    ({"timeout_s": "10"}, TypeError, "timeout_s must be a number"),
    ({"timeout_s": True}, TypeError, "timeout_s must be a number"),
])
def test_bad_arguments_raise_before_anything_starts(tmp_path: Path, kwargs: dict[str, object],
                                                    error: type[Exception], text: str) -> None:
    arguments: dict[str, object] = {"command": stub(), "health": "/health", "timeout_s": 5}
    arguments.update(kwargs)
    with pytest.raises(error, match=text):
        server_process.start(arguments["command"], tmp_path / "server.log",  # type: ignore[arg-type]
                             health=arguments["health"],  # type: ignore[arg-type]
                             timeout_s=arguments["timeout_s"])  # type: ignore[arg-type]
    assert not (tmp_path / "server.log").exists()


def test_the_log_tail_keeps_the_last_lines_and_what_a_progress_bar_shows_last(
        tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert log_tail(log) == ""
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100))
                    + b"Loading: 0%\rLoading: 50%\rLoading: 100%\r\n" + b"bad \xff byte")
    assert log_tail(log, 3).splitlines() == ["line 99", "Loading: 100%", "bad \ufffd byte"]
    assert len(log_tail(log).splitlines()) == server_process.TAIL_LINES
    log.write_bytes(b"x" * 200_000 + b"\nlast\n")  # longer than what is read: the cut line goes
    assert log_tail(log) == "last"
