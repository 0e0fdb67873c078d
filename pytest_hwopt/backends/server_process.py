"""A server process for a test: started on a free port, awaited on its health path, stopped
with its whole process group.

:func:`start` runs a command (``{port}`` in its arguments becomes a free TCP port), sends
its standard output and error to a log file, and polls ``GET http://127.0.0.1:PORT<health>``
until it answers 200. A server that exits first, or answers nothing but errors until the
timeout, raises :class:`ServerStartError` naming the exit code or the timeout with the last
lines of its log. :meth:`ServerProcess.stop` sends SIGTERM to the process group (the process
runs in a session of its own, so workers it spawned are in it), waits, then SIGKILLs what is
left. The standard library only (``subprocess``, ``urllib.request``); nothing of pytest.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import urllib.request

PLACEHOLDER: Final = "{port}"
#: log lines an error message and a test report show
TAIL_LINES: Final = 30
#: seconds between SIGTERM and SIGKILL
GRACE_S: Final = 5.0
#: seconds between two health requests, and the longest one may take
POLL_S: Final = 0.1
REQUEST_TIMEOUT_S: Final = 2.0
#: the most bytes read from the end of a log for its tail
_TAIL_BYTES: Final = 64 * 1024


class ServerStartError(RuntimeError):
    """A server exited, or did not answer 200 on its health path in time, while starting.

    ``exit_code`` is the process's exit status (negative: killed by that signal; None when it
    timed out), ``log_tail`` the last lines of its log, ``log_path`` the log file."""

    def __init__(self, message: str, *, exit_code: int | None, log_tail: str,
                 log_path: Path) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.log_tail = log_tail
        self.log_path = log_path


@dataclass
class ServerProcess:
    """A started server: ``url`` is ``http://127.0.0.1:PORT`` (no trailing slash),
    ``argv`` the command as run (the port filled in), ``log_path`` its stdout and stderr."""

    argv: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        """Whether the server's own process (not its workers) is still running."""
        return self.process.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM to the process group without waiting (:meth:`stop` waits)."""
        if not self._stopped and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)

    def stop(self, grace_s: float = GRACE_S) -> int | None:
        """Stop the server and every process of its group: SIGTERM, up to ``grace_s``
        seconds for the server to exit, then SIGKILL to the group (workers that outlived the
        server included). Returns the server's exit status (negative: the signal that ended
        it), None if it could not be reaped. Safe to call more than once."""
        if self._stopped:
            return self.process.returncode
        self._stopped = True
        if self.process.returncode is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        # the server may be gone and its workers not: the group gets SIGKILL in any case
        _signal_group(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        return self.process.returncode

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log ("" if it is empty or gone)."""
        return log_tail(self.log_path, lines)


def check_arguments(command: object, health: object, timeout_s: object) -> list[str]:
    """The command as a list of strings, after checking all three arguments of :func:`start`.

    Raises ``TypeError`` when ``command`` is not a list or tuple of strings, ``health`` not
    a string or ``timeout_s`` not a number; ``ValueError`` when ``command`` or its program is
    empty, ``health`` does not start with "/" or ``timeout_s`` is not positive and finite.
    """
    where = "hwopt_server"
    if isinstance(command, (str, bytes)) or not isinstance(command, (list, tuple)):
        hint = (" (split a command line with shlex.split)" if isinstance(command, str) else "")
        raise TypeError(f"{where}: command must be a list of strings, the program and its "
                        f"arguments, got {type(command).__name__}{hint}")
    if not command:
        raise ValueError(f"{where}: command is empty; give the program and its arguments")
    wrong = [(i, a) for i, a in enumerate(command) if not isinstance(a, str)]
    if wrong:
        i, a = wrong[0]
        raise TypeError(f"{where}: command[{i}] is {type(a).__name__} {a!r}; every item must be "
                        f"a string (str() paths and numbers)")
    if not command[0]:
        raise ValueError(f"{where}: command[0], the program, is an empty string")
    if not isinstance(health, str):
        raise TypeError(f"{where}: health must be a string path, got {type(health).__name__}")
    if not health.startswith("/"):
        raise ValueError(f"{where}: health must be a path starting with '/', got {health!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise TypeError(f"{where}: timeout_s must be a number of seconds, got "
                        f"{type(timeout_s).__name__}")
    if not 0 < timeout_s < float("inf"):
        raise ValueError(f"{where}: timeout_s must be positive and finite, got {timeout_s!r}")
    return list(command)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the system's choice; another process may take it
    before the server binds it, which the server's exit then reports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fill_port(command: Sequence[str], port: int) -> list[str]:
    """``command`` with every ``{port}`` (anywhere in an argument) replaced by ``port``."""
    return [arg.replace(PLACEHOLDER, str(port)) for arg in command]


def start(command: Sequence[str], log_path: Path, *, health: str = "/health",
          timeout_s: float = 120.0) -> ServerProcess:
    """Start ``command`` on a free port and return it once ``GET <url><health>`` answers 200.

    ``log_path`` receives the server's stdout and stderr (its folder is created; the file is
    replaced). The process runs in a new session (its own process group), with stdin closed.
    Raises ``TypeError``/``ValueError`` on bad arguments (:func:`check_arguments`), and
    :class:`ServerStartError` when the program cannot be run, when the server exits before
    answering 200, or when ``timeout_s`` seconds pass without a 200 (the server is then
    stopped). The server is stopped as well when waiting is interrupted.
    """
    argv = fill_port(check_arguments(command, health, timeout_s), port := free_port())
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise ServerStartError(
                f"hwopt_server: could not run {shlex.join(argv)}: {exc}",
                exit_code=None, log_tail="", log_path=log_path) from None
    server = ServerProcess(argv, port, log_path, process)
    try:
        _await_health(server, health, float(timeout_s))
    except BaseException:
        server.stop()
        raise
    return server


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file, undecodable bytes replaced ("" if missing)."""
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip("\r\n")
    found = text.split("\n")
    if size > _TAIL_BYTES:
        found = found[1:]  # the first line read is cut
    # progress bars redraw themselves after a "\r": keep what the line shows last
    return "\n".join(line.rstrip("\r").rpartition("\r")[2] for line in found[-lines:])


def _await_health(server: ServerProcess, health: str, timeout_s: float) -> None:
    import urllib.request  # here: the plugin loads this module when pytest starts

    url = server.url + health
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for 127.0.0.1
    started = time.monotonic()
    deadline = started + timeout_s
    last = "no answer yet"
    while True:
        code = server.process.poll()
        if code is not None:
            raise _failure(server, f"exited with {_status(code)} after "
                           f"{time.monotonic() - started:.1f} s, before GET {url} answered 200 "
                           f"(last: {last})", code)
        now = time.monotonic()
        if now >= deadline:
            break
        last = _ask(opener, url, min(REQUEST_TIMEOUT_S, deadline - now))
        if last == "200":
            return
        time.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))
    server.stop()
    raise _failure(server, f"did not answer 200 within {timeout_s:g} s on GET {url} (last: "
                   f"{last}); it was stopped", None)


def _ask(opener: urllib.request.OpenerDirector, url: str, timeout_s: float) -> str:
    """One health request: "200", another status code, or why there was no answer."""
    import urllib.error

    try:
        with opener.open(url, timeout=max(timeout_s, 0.01)) as response:
            return str(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"{exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"no answer: {reason}"


def _status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name} (exit code {code})"
    return f"exit code {code}"


def _failure(server: ServerProcess, what: str, code: int | None) -> ServerStartError:
    tail = server.log_tail()
    shown = tail if tail else "(the log is empty)"
    return ServerStartError(
        f"hwopt_server: server {what}\ncommand: {shlex.join(server.argv)}\n"
        f"log {server.log_path}, last lines:\n{shown}",
        exit_code=code, log_tail=tail, log_path=server.log_path)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group ``pid`` leads (its session's); nothing if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
