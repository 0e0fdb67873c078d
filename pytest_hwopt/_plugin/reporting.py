"""What a run shows and leaves: test report properties, the terminal summary, the JSON file,
and the rule that a run whose performance tests all skipped is not green."""

from __future__ import annotations

from collections.abc import Generator
from typing import cast

import pytest

from pytest_hwopt._plugin.state import (
    PERF_TEST,
    RECORD,
    record_key,
    state_key,
    uses_plugin,
    xdist_worker,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and record_key in item.stash:
        report.user_properties.append((RECORD, item.stash[record_key]))
    if (report.when == "call" or report.skipped) and uses_plugin(item):
        report.user_properties.append((PERF_TEST, True))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    state = config.stash.get(state_key, None)
    if state is not None and state.all_skipped_message:
        terminalreporter.write_sep("-", "hwopt: nothing measured", red=True)
        terminalreporter.write_line(state.all_skipped_message)
    if state is None or not state.records:
        return
    from pytest_hwopt.results import terminal

    tr = terminalreporter
    tr.write_sep("-", "hwopt summary")
    for line in terminal.table(terminal.summary_rows(state.records), terminal.SUMMARY_HEADER):
        tr.write_line(line)
    for line in terminal.note_lines(state.records):
        tr.write_line(line)
    tr.write_line(terminal.totals_line(state.records, state.settings.report_only))
    if state.settings.json_path and xdist_worker(config) is None:
        tr.write_line(f"hwopt: results written to {state.settings.json_path}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(state_key, None)
    if state is None or xdist_worker(config) is not None:
        return
    if state.perf_tests and state.perf_tests == state.skipped_perf_tests:
        # every performance test skipped: the run must not look green
        state.all_skipped_message = (
            f"hwopt: all {len(state.perf_tests)} performance test(s) were skipped, so no "
            f"budget was checked (see the skip reasons, e.g. with -rs); failing the run")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not state.records and not state.settings.json_path:
        return  # nothing measured, nothing asked for
    from pytest_hwopt import __version__
    from pytest_hwopt.hardware import environment
    from pytest_hwopt.results import jsonio, schema

    env = cast("schema.Environment",
               environment.collect(state.resolved_device, state.settings.threads))
    env["settings"] = schema.settings_record(state.settings)
    document = schema.document(state.records, env, __version__)
    # hooks first: a baseline comparison adds to the document that --hwopt-json writes
    config.hook.pytest_hwopt_session_results(config=config, document=document)
    if state.settings.json_path:
        jsonio.write_json_atomic(state.settings.json_path, document)
