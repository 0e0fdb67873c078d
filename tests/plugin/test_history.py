"""A run history: each run appended to one store, judged against the runs before it, and the
series and change points that ``pytest-hwopt history`` lists."""

from __future__ import annotations

import json
import sqlite3

import pytest

from pytest_hwopt.__main__ import main
from pytest_hwopt.results import history

try:  # imported here: in-process pytester runs cannot load its SciPy extensions a second time
    import ruptures
except ImportError:
    ruptures = None

needs_ruptures = pytest.mark.skipif(
    ruptures is None, reason="change points need the 'history' extra (pip install "
                             "'pytest-hwopt[history]'): ruptures is not installed")


@pytest.fixture(autouse=True)
def no_ci_variables(monkeypatch):
    """Inner sessions see no CI commit or branch unless a test sets them."""
    for name in history.COMMIT_VARIABLES + history.BRANCH_VARIABLES + ("PYTEST_XDIST_WORKER",):
        monkeypatch.delenv(name, raising=False)


pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    # on a busy machine a check may be inconclusive: a warning, which this suite's
    # filterwarnings=error would make a failure of the inner test
    pytest.mark.filterwarnings("default::pytest_hwopt.InconclusiveWarning"),
]

# "fast" is a tenth of "slow"; FAST_FACTOR slows "fast" alone, MACHINE_FACTOR both (a slower
# machine, or a busier one, on the day)
PAIR = '''
import os


@hwopt.speedup(min=2.0, vs="slow")
def test_pair(hwopt_bench):
    fast_factor = float(os.environ.get("FAST_FACTOR", "1"))
    machine = float(os.environ.get("MACHINE_FACTOR", "1"))
    hwopt_bench.measure("slow", lambda: spin(int(20_000 * machine)))
    hwopt_bench.measure("fast", lambda: spin(int(2_000 * fast_factor * machine)))
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*args)


@pytest.fixture
def suite(pytester, workloads):
    pytester.makepyfile(test_it=workloads + PAIR)
    return pytester


def build_history(pytester, fast_args, runs: int = 4) -> None:
    # a first run warms this process (imports, caches), which the history should not see
    run(pytester, *fast_args).assert_outcomes(passed=1)
    for _ in range(runs):
        run(pytester, *fast_args, "--hwopt-history=h.sqlite").assert_outcomes(passed=1)


# ---- appending ------------------------------------------------------------------------------

def test_each_run_is_appended_with_its_commit_branch_machine_and_samples(suite, fast_args,
                                                                          monkeypatch):
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("GITHUB_REF_NAME", "main")
    first = run(suite, *fast_args, "--hwopt-history=h.sqlite", "--hwopt-json=run.json")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*hwopt: run 1 added to the history h.sqlite (machine * "
                                "thread*)*"])
    run(suite, *fast_args, "--hwopt-history=h.sqlite").stdout.fnmatch_lines(
        ["*hwopt: run 2 added to the history h.sqlite*"])

    with history.open_store(suite.path / "h.sqlite", create=False) as store:
        runs = store.runs()
        points = store.points()
    assert [(r.commit, r.branch, r.source) for r in runs] == [
        ("0123456789abcdef0123456789abcdef01234567", "main", "pytest")] * 2
    assert runs[0].fingerprint == runs[1].fingerprint  # same machine, same settings
    assert {(p.variant, p.reference) for p in points} == {("fast", "slow"), ("slow", "fast")}
    assert all(len(p.samples) >= 5 for p in points)
    db = sqlite3.connect(suite.path / "h.sqlite")
    assert db.execute("SELECT DISTINCT kind, variant, vs, status FROM checks").fetchall() == [
        ("speedup", "fast", "slow", "passed")]
    db.close()
    # the results file records the same commit, for `pytest-hwopt history --add`
    revision = json.loads((suite.path / "run.json").read_text())["revision"]
    assert revision["commit"].startswith("0123456789") and revision["branch"] == "main"


def test_the_ini_key_names_a_store_relative_to_the_ini_file(suite, fast_args):
    suite.mkdir("perf")
    suite.makeini("[pytest]\nhwopt_history = perf/history.sqlite\n")
    run(suite, *fast_args).assert_outcomes(passed=1)
    with history.open_store(suite.path / "perf" / "history.sqlite", create=False) as store:
        assert len(store.runs()) == 1


@pytest.mark.parametrize(("content", "words"), [
    (b"these are notes, not a database\n" * 100, "not an SQLite database"),
    (None, r"another SQLite database \(tables: customers\)"),
])
def test_a_corrupt_or_foreign_store_is_a_usage_error_naming_it(suite, fast_args, content,
                                                               words):
    path = suite.path / "h.sqlite"
    if content is None:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE customers (name TEXT)")
        db.commit()
        db.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    result = run(suite, *fast_args, "--hwopt-history=h.sqlite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([rf".*--hwopt-history=h\.sqlite: .*h\.sqlite: not a "
                                  rf"pytest-hwopt history store: {words}.*left as it is"])
    assert path.read_bytes() == before  # nothing in it is lost


# ---- judging a run against its history -----------------------------------------------------

@needs_ruptures
def test_without_history_variants_are_reported_not_failed(suite, fast_args):
    result = run(suite, *fast_args, "--hwopt-history=h.sqlite", "--hwopt-compare=history")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*hwopt: compared with the history of machine * in h.sqlite: 0 variant(s) judged, "
        "0 regression(s), 0 improvement(s)",
        "*hwopt: too little history (reported, not failed; 3 runs needed) for 2 variant(s): "
        "test_it.py::test_pair slow, test_it.py::test_pair fast"])


@needs_ruptures
def test_a_variant_slower_than_its_history_and_its_reference_fails_its_test(
        suite, fast_args, monkeypatch):
    build_history(suite, fast_args)
    monkeypatch.setenv("FAST_FACTOR", "4")
    result = run(suite, *fast_args, "--hwopt-history=h.sqlite", "--hwopt-compare=history",
                 "--hwopt-json=today.json")
    [check] = [c for c in json.loads((suite.path / "today.json").read_text())["checks"]
               if c["kind"] == "history"]
    if check["status"] == "inconclusive":  # as for any budget: busy samples decide nothing
        assert check["reason"].startswith("machine busy: ")
        pytest.skip(f"this machine was too busy to judge: {check['reason']}")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*regression of fast vs history: median \S+ ms over 4 runs -> \S+ ms, \d\.\d\dx slower "
        r"\(allowed up to \d+\.\d\dx: run-to-run spread \d+\.\d%, p=\S+\); within the run vs "
        r"slow: \d\.\d\dx slower over 4 runs \(allowed up to \d+\.\d\dx, p=\S+\)"])
    result.stdout.fnmatch_lines(["*test_pair*history*fast*<= *x*failed*",
                                 "*2 variant(s) judged, 1 regression(s), 0 improvement(s)"])
    result.stdout.fnmatch_lines(["*hwopt: run 5 added to the history h.sqlite*"])


@needs_ruptures
def test_a_machine_slower_for_every_variant_fails_nothing(suite, fast_args, monkeypatch):
    build_history(suite, fast_args)
    monkeypatch.setenv("MACHINE_FACTOR", "4")  # every variant 4x slower today
    result = run(suite, *fast_args, "--hwopt-history=h.sqlite", "--hwopt-compare=history",
                 "--hwopt-json=today.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*variant(s) judged, 0 regression(s), 0 improvement(s)"])
    checks = json.loads((suite.path / "today.json").read_text())["checks"]
    assert [c["status"] for c in checks if c["kind"] == "history"] in ([], ["inconclusive"])


def test_compare_history_needs_a_store(suite, fast_args):
    result = run(suite, *fast_args, "--hwopt-compare=history")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hwopt-compare=history needs a history store: give "
                                 "--hwopt-history=PATH (or the ini key hwopt_history)*"])


# ---- the history command --------------------------------------------------------------------

@needs_ruptures
def test_the_history_command_lists_series_and_change_points(suite, fast_args, monkeypatch,
                                                            capsys):
    build_history(suite, fast_args)
    monkeypatch.setenv("FAST_FACTOR", "10")  # as slow as "slow": the speedup budget fails too
    run(suite, *fast_args, "--hwopt-history=h.sqlite").assert_outcomes(failed=1)
    capsys.readouterr()

    store = str(suite.path / "h.sqlite")
    assert main(["history", store]) == 0
    out = capsys.readouterr().out
    assert "machine " in out and ": 5 run(s)" in out
    for label in ("slow", "fast", "fast / slow", "slow / fast"):
        assert f"test_it.py::test_pair  {label} " in out
    # the within-run ratio shows the step even where the times across runs scatter too much
    assert "test_it.py::test_pair fast / slow: +" in out and " at run 5 (commit " in out

    assert main(["history", store, "--fail-on-change"]) == 1
    out = capsys.readouterr().out
    assert "newest segment slower in 1" in out
    assert "slowdown: test_it.py::test_pair fast / slow: +" in out

    assert main(["history", store, "--test", "*nothing*"]) == 0
    assert "no results matching '*nothing*'" in capsys.readouterr().out


def test_results_files_of_other_machines_are_added(suite, fast_args, capsys):
    for name in ("a.json", "b.json"):
        run(suite, *fast_args, f"--hwopt-json={name}").assert_outcomes(passed=1)
    capsys.readouterr()
    store = suite.path / "matrix.sqlite"
    assert main(["history", str(store), "--add", str(suite.path / "a.json"),
                 str(suite.path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "a.json as run 1 (machine " in out and "b.json as run 2" in out
    with history.open_store(store, create=False) as opened:
        assert [r.source.rsplit("/", 1)[-1] for r in opened.runs()] == ["a.json", "b.json"]


def test_the_history_command_names_a_bad_file_and_stores_nothing(suite, capsys):
    (suite.path / "bench.json").write_text('{"benchmarks": [], "version": "5.1.0"}')
    store = suite.path / "h.sqlite"
    assert main(["history", str(store), "--add", str(suite.path / "bench.json")]) == 2
    assert "bench.json: not a pytest-hwopt results file" in capsys.readouterr().err
    assert not store.exists()
    assert main(["history", str(suite.path / "missing.sqlite")]) == 2
    assert "missing.sqlite: no such history store" in capsys.readouterr().err


# ---- parallel runs --------------------------------------------------------------------------

def test_an_xdist_run_is_appended_once_by_the_controller(suite, fast_args):
    pytest.importorskip("xdist")
    suite.makepyfile(test_more='''
from test_it import spin
from pytest_hwopt import hwopt


@hwopt.speedup(min=2.0, vs="slow")
def test_other(hwopt_bench):
    hwopt_bench.measure("slow", lambda: spin(20_000))
    hwopt_bench.measure("fast", lambda: spin(2_000))
''')
    result = suite.runpytest_subprocess(*fast_args, "-n", "2", "--hwopt-history=h.sqlite")
    result.assert_outcomes(passed=2)
    with history.open_store(suite.path / "h.sqlite", create=False) as store:
        [only] = store.runs()
        assert {p.test for p in store.points()} == {"test_it.py::test_pair",
                                                    "test_more.py::test_other"}


def test_worker_processes_never_append_to_the_history(pytester):
    """A check repeated in fresh processes (--hwopt-processes) is one run, appended once by
    the session: its workers get the option empty, which turns off the ini key too."""
    from pytest_hwopt._plugin import processes
    from pytest_hwopt._plugin.history import session_history
    from pytest_hwopt.core.settings import parse_settings

    pytester.makeini("[pytest]\nhwopt_history = h.sqlite\n")
    config = pytester.parseconfigure("--hwopt-max-time=0.5")
    job = processes.worker_job(config, "t.py::t", pytester.path / "tmp", 1,
                               parse_settings({}), "cpu", 60.0)
    assert "--hwopt-history=" in job.argv
    worker = pytester.parseconfigure("--hwopt-history=")
    assert session_history(worker, None) is None
    assert session_history(config, None) is not None


def test_the_json_and_the_html_report_show_each_variants_history(suite, fast_args):
    pytest.importorskip("plotly")
    build_history(suite, fast_args, runs=2)
    result = run(suite, *fast_args, "--hwopt-history=h.sqlite", "--hwopt-html=report.html",
                 "--hwopt-json=run.json")
    result.assert_outcomes(passed=1)
    document = json.loads((suite.path / "run.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_hwopt.results.schema import json_schema

    jsonschema.Draft202012Validator(json_schema()).validate(document)  # history, revision
    assert set(document["revision"]) == {"time", "commit", "branch"}
    section = document["history"]
    assert section["store"].endswith("h.sqlite")
    assert sorted((s["variant"], s["runs"]) for s in section["series"]) == [
        ("fast", [1, 2, 3]), ("slow", [1, 2, 3])]  # this run is the last point
    page = (suite.path / "report.html").read_text()
    assert '<section id="history"><h2>History</h2>' in page
    assert 'id="plot-history"' in page and "Diamonds mark change points" in page
