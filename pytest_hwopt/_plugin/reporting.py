"""What a run shows and leaves: test report properties, the terminal summary, the JSON file,
what CI systems read (JUnit XML, the GitHub Actions job summary), and the rule that a run
whose performance tests all skipped is not green."""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator
from typing import TYPE_CHECKING, cast

import pytest

from pytest_hwopt._plugin.state import (
    PERF_TEST,
    RECORD,
    record_key,
    state_key,
    uses_plugin,
    xdist_worker,
)

if TYPE_CHECKING:
    from pytest_hwopt._plugin.state import State


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    if call.when == "call" and record_key in item.stash and item.config.getoption(
            "xmlpath", None):
        # the checks as captured output: pytest's JUnit XML writes them to the testcase's
        # <system-out> (with junit_logging = system-out, out-err or all)
        from pytest_hwopt.results import ci

        text = ci.system_out_text(item.stash[record_key])
        if text:
            item.add_report_section("call", "stdout", text)
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
    tr.write_line(terminal.totals_line(state.records, state.settings.report_only,
                                       state.settings.strict))
    if state.settings.json_path and xdist_worker(config) is None:
        tr.write_line(f"hwopt: results written to {state.settings.json_path}")


@pytest.hookimpl(tryfirst=True)  # before pytest's JUnit XML is written
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
    if state.records:
        _ci_outputs(config, state)
    asked = state.settings.json_path or any(
        config.getoption(name, None) for name in ("hwopt_html", "hwopt_benchmark_json"))
    if not state.records and not asked:
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


def _ci_outputs(config: pytest.Config, state: State) -> None:
    """Every check as a ``<testsuite>`` property of the JUnit XML (``--junitxml``), and as
    a markdown table appended to ``$GITHUB_STEP_SUMMARY`` when that is set (controller only).
    """
    from pytest_hwopt.results import ci

    try:  # where record_testsuite_property puts its properties, which xunit2 allows
        from _pytest.junitxml import xml_key
    except ImportError:  # a pytest without it: the per-test <system-out> lines remain
        xml = None
    else:
        xml = config.stash.get(xml_key, None)
    if xml is not None:
        for name, value in ci.junit_properties(state.records):
            xml.add_global_property(name, value)
    path = os.environ.get(ci.STEP_SUMMARY_ENV)
    if path:
        text = ci.step_summary(state.records, state.settings.report_only,
                               state.settings.strict)
        try:
            ci.append_step_summary(path, text)
        except OSError as exc:
            warnings.warn(f"hwopt: could not append to {ci.STEP_SUMMARY_ENV}={path}: {exc}",
                          stacklevel=1)
