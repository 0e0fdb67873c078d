"""The ``hwopt_server`` fixture: a server process for the length of one test.

``hwopt_server(command, *, health="/health", timeout_s=120)`` starts ``command`` (each
``{port}`` in it replaced by one free port) and returns ``http://127.0.0.1:PORT`` once
``GET <health>`` answers 200 (:mod:`pytest_hwopt.backends.server_process`). Each server's
stdout and stderr go to ``hwopt-server-<n>.log`` in the test's ``tmp_path``; a failing
test's report ends with the last lines of each server's log. The servers, with their process
groups, are stopped at the end of the test, the last started first.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import pytest

if TYPE_CHECKING:  # imported where a server is started: not on every pytest start-up
    from pytest_hwopt.backends.server_process import ServerProcess

#: the test's started servers, in start order (for the report sections and the teardown)
servers_key: Final[pytest.StashKey[list[ServerProcess]]] = pytest.StashKey()


class StartServer(Protocol):
    """The ``hwopt_server`` factory's signature."""

    def __call__(self, command: Sequence[str], *, health: str = "/health",
                 timeout_s: float = 120) -> str: ...


@pytest.fixture
def hwopt_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartServer]:
    """Start a server for this test: ``url = hwopt_server(command, *, health="/health",
    timeout_s=120)``.

    ``command``: the program and its arguments (a list of strings); every ``{port}`` in
    them becomes the one free TCP port chosen for this server. Returns the base URL
    ``http://127.0.0.1:PORT`` once ``GET http://127.0.0.1:PORT<health>`` answers 200.
    ``timeout_s``: seconds to wait for that 200.

    Raises ``TypeError`` or ``ValueError`` on a bad argument (an empty command, a
    non-string item, a health path not starting with "/", ``timeout_s <= 0``), and
    :class:`~pytest_hwopt.backends.server_process.ServerStartError` when the server exits
    before answering 200 (its exit code and the last lines of its log in the message) or
    does not answer 200 within ``timeout_s`` (it is stopped). Several servers per test are
    allowed; all are stopped at the end of the test (SIGTERM to the process group, SIGKILL
    a few seconds later), and a failing test's report shows the tail of each server's log.
    """
    started: list[ServerProcess] = []
    request.node.stash[servers_key] = started
    count = 0

    def start_server(command: Sequence[str], *, health: str = "/health",
                     timeout_s: float = 120) -> str:
        __tracebackhide__ = True
        from pytest_hwopt.backends.server_process import ServerStartError, start

        nonlocal count
        count += 1
        log_path = tmp_path / f"hwopt-server-{count}.log"
        try:
            server = start(command, log_path, health=health, timeout_s=timeout_s)
        except (ServerStartError, TypeError, ValueError) as exc:
            raise exc.with_traceback(None) from None  # the message says it all
        started.append(server)
        return server.url

    try:
        yield start_server
    finally:
        for server in started:  # all at once: each may take seconds to shut down
            server.terminate()
        for server in reversed(started):
            server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed phase's report gets one section per server of the test: the last lines of
    its log, beside pytest's captured output (shown with ``--show-capture`` ``all``, the
    default, or ``log``)."""
    report = yield
    if report.failed and servers_key in item.stash:
        servers: list[ServerProcess] = item.stash[servers_key]
        for n, server in enumerate(servers, start=1):
            report.sections.append(_section(n, server, report.when))
    return report


def _section(n: int, server: ServerProcess, when: str | None) -> tuple[str, str]:
    from pytest_hwopt.backends.server_process import TAIL_LINES

    state = "running" if server.running() else f"exited, code {server.process.returncode}"
    title = (f"hwopt_server {n} log {when}: {server.url} ({state}; last {TAIL_LINES} lines "
             f"of {server.log_path})")
    return title, server.log_tail() or "(the log is empty)"
