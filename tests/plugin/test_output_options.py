"""An output asked for by option is written, or the run stops at start with a usage error
(exit 4) that names the option and the fix: never a green run without the file."""

from __future__ import annotations

import sys

import pytest

OUTPUTS = [("--hwopt-json", "results.json"), ("--hwopt-benchmark-json", "bench.json"),
           ("--hwopt-html", "report.html"), ("--hwopt-save", "run.json")]


@pytest.fixture(autouse=True)
def not_an_xdist_worker(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def test_html_report_without_plotly_is_a_usage_error_naming_the_fix(pytester, monkeypatch,
                                                                    workloads, fast_args):
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if plotly were not installed
    pytester.makepyfile(test_it=workloads + '''
def test_it(hwopt_bench):
    hwopt_bench.measure("fast", fast)
''')
    result = pytester.runpytest(*fast_args, "--hwopt-html=report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-html=report.html: this output needs plotly, which "
                                 "is not installed: pip install plotly*"])
    assert not (pytester.path / "report.html").exists()


@pytest.mark.parametrize("option,name", OUTPUTS)
def test_an_output_path_that_is_a_directory_is_a_usage_error(pytester, option, name):
    pytester.mkdir("out.json")
    pytester.makepyfile(test_it="def test_plain():\n    pass\n")
    result = pytester.runpytest(f"{option}=out.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}=out.json: is a directory*"])


@pytest.mark.parametrize("option,name", OUTPUTS)
def test_an_output_under_a_file_is_a_usage_error(pytester, option, name):
    pytester.makefile(".txt", blocker="not a folder")
    pytester.makepyfile(test_it="def test_plain():\n    pass\n")
    result = pytester.runpytest(f"{option}=blocker.txt/{name}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}=blocker.txt/{name}: *blocker.txt is a file, so no "
                                 "folder can be made there*"])


@pytest.mark.parametrize("option,name", OUTPUTS[:3])
def test_outputs_are_written_in_new_folders_even_when_nothing_was_measured(
        pytester, option, name):
    if option == "--hwopt-html":
        pytest.importorskip("plotly")
    pytester.makepyfile(test_it="def test_plain():\n    pass\n")
    result = pytester.runpytest(f"{option}=new/folder/{name}")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "new" / "folder" / name).is_file()


def test_a_saved_run_needs_a_folder_it_can_make(pytester):
    pytester.makefile("", **{".hwopt": "a file where the folder of saved runs goes"})
    pytester.makepyfile(test_it="def test_plain():\n    pass\n")
    result = pytester.runpytest("--hwopt-save=nightly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-save=nightly: *.hwopt is a file, so no folder can "
                                 "be made there*"])
