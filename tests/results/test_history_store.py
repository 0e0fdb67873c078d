"""The history store: what a run records, transactions, concurrent appenders, foreign files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_hwopt.results import history
from pytest_hwopt.results.history import HistoryError, Revision, SqliteStore

ENV = {"hostname": "runner-1", "cpu": "AMD EPYC 7B13", "cpu_flags": ["fma", "avx2"],
       "machine": "x86_64", "python": "3.11.7", "threads": 2,
       "versions": {"pytest": "9.2.0", "numpy": "2.4.6", "torch": "2.13.0"}}


def document(median: float = 1.0, commit: str = "abc123", test: str = "t.py::test_op"
             ) -> dict:
    return {
        "version": "0.1.0", "format": 1, "environment": dict(ENV),
        "tests": [{"test": test, "device": "cpu"}],
        "results": [
            {"test": test, "variant": "slow", "median_ms": 10 * median, "mean_ms": 10 * median,
             "samples": [10 * median] * 5, "rounds_ms": [10 * median], "disturbed": [False] * 5},
            {"test": test, "variant": "fast", "median_ms": median, "mean_ms": median,
             "samples": [median, median * 1.01], "rounds_ms": [median]},
        ],
        "checks": [{"test": test, "kind": "speedup", "variant": "fast", "vs": "slow",
                    "status": "passed", "measured": 10.0, "budget": 2.0, "unit": "x"}],
        "revision": {"time": "2026-11-29T10:00:00+00:00", "commit": commit, "branch": "main"},
    }


# ---- what a run records -------------------------------------------------------------------

def test_the_fingerprint_is_the_machine_not_the_host():
    fid, description = history.fingerprint(ENV)
    other_host = history.fingerprint(dict(ENV, hostname="runner-2",
                                          versions=dict(ENV["versions"], pytest="8.0")))
    assert other_host[0] == fid  # identical runners (and the test runner's version) share it
    assert description["cpu_flags"] == ["avx2", "fma"] and "hostname" not in description
    assert history.fingerprint(dict(ENV, threads=1))[0] != fid
    assert history.fingerprint(dict(ENV, cpu_flags=["fma"]))[0] != fid
    assert history.fingerprint(dict(ENV, versions={**ENV["versions"], "torch": "2.14"}))[0] != fid
    assert history.fingerprint(dict(ENV, gpu="NVIDIA H100", driver="580.1"))[0] != fid


@pytest.mark.parametrize(("environ", "expected"), [
    ({"GITHUB_SHA": "1" * 40, "GITHUB_REF_NAME": "main"}, Revision("1" * 40, "main")),
    ({"GITHUB_SHA": "1" * 40, "GITHUB_REF_NAME": "7/merge", "GITHUB_HEAD_REF": "feature"},
     Revision("1" * 40, "feature")),
    ({"CI_COMMIT_SHA": "2" * 40, "CI_COMMIT_REF_NAME": "release"}, Revision("2" * 40, "release")),
])
def test_commit_and_branch_come_from_the_ci_variables(environ, expected, tmp_path):
    assert history.revision(environ, tmp_path) == expected


def test_outside_a_repository_and_ci_commit_and_branch_are_unknown(tmp_path):
    assert history.revision({}, tmp_path) == Revision(None, None)


def test_a_run_keeps_statistics_samples_references_and_checks(tmp_path):
    with SqliteStore(tmp_path / "h.sqlite") as store:
        run_id = store.append(history.run_of(document(), source="pytest"))
        points = store.points()
        [run] = store.runs()
        machines = store.machines()
    assert run.id == run_id and run.commit == "abc123" and run.branch == "main"
    assert run.recorded_at == "2026-11-29T10:00:00+00:00" and run.hostname == "runner-1"
    assert machines == {run.fingerprint: history.fingerprint(ENV)[1]}
    fast = next(p for p in points if p.variant == "fast")
    assert fast.reference == "slow" and fast.median_ms == 1.0 and fast.samples == (1.0, 1.01)
    # the per-round values stay, for the within-run ratio round by round
    assert fast.rounds_ms == (1.0,) and fast.rounds_disturbed == ()
    db = sqlite3.connect(tmp_path / "h.sqlite")
    assert db.execute("SELECT kind, vs, status, measured FROM checks").fetchall() == [
        ("speedup", "slow", "passed", 10.0)]
    db.close()


def test_points_filter_by_machine_and_test_pattern(tmp_path):
    with SqliteStore(tmp_path / "h.sqlite") as store:
        store.append(history.run_of(document(test="t.py::test_op"), source="a"))
        store.append(history.run_of(document(test="t.py::test_other"), source="b",
                                    environment=dict(ENV, threads=1)))
        assert {p.test for p in store.points(test="*other")} == {"t.py::test_other"}
        assert {p.test for p in store.points(test="test_op")} == {"t.py::test_op"}
        fid = history.fingerprint(ENV)[0]
        assert {p.test for p in store.points(fingerprint=fid)} == {"t.py::test_op"}


def test_a_result_without_a_median_is_an_error_naming_the_source():
    bad = document()
    del bad["results"][0]["median_ms"]
    with pytest.raises(HistoryError, match=r"run\.json: results\[0\] \(t.py::test_op slow\)"):
        history.run_of(bad, source="run.json")


# ---- transactions and concurrency -----------------------------------------------------------

def test_an_interrupted_append_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    with SqliteStore(path) as store:
        store.append(history.run_of(document(), source="first"))
    before = path.read_bytes()

    rows = history._result_rows

    def interrupted(run_id, run):
        yield from list(rows(run_id, run))[:1]
        raise KeyboardInterrupt  # Ctrl-C, or a CI job cancelled, half-way through the rows

    monkeypatch.setattr(history, "_result_rows", interrupted)
    with SqliteStore(path) as store:
        with pytest.raises(KeyboardInterrupt):
            store.append(history.run_of(document(2.0), source="second"))
        assert [r.source for r in store.runs()] == ["first"]
        assert len(store.points()) == 2
    assert path.read_bytes() == before


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    path = tmp_path / "h.sqlite"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_history_store import document
        from pytest_hwopt.results import history
        for n in range(25):
            with history.SqliteStore({str(path)!r}) as store:
                store.append(history.run_of(document(1 + n / 100, commit=sys.argv[1] + str(n)),
                                            source=sys.argv[1]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with SqliteStore(path) as store:
        runs = store.runs()
        assert sorted(r.source for r in runs) == ["a"] * 25 + ["b"] * 25
        assert len({r.commit for r in runs}) == 50
        assert len(store.points()) == 100


# ---- files that are not a store -------------------------------------------------------------

def test_a_file_that_is_not_sqlite_is_an_error_naming_it_and_left_alone(tmp_path):
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"not a database, but someone's notes\n" * 200)
    with pytest.raises(HistoryError, match=r"history\.sqlite: not a pytest-hwopt history "
                                           r"store: not an SQLite database"):
        history.open_store(path)
    assert path.read_bytes() == b"not a database, but someone's notes\n" * 200


def test_another_sqlite_database_is_an_error_naming_its_tables_and_left_alone(tmp_path):
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (name TEXT)")
    db.execute("INSERT INTO customers VALUES ('Ada')")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(HistoryError, match=r"app\.db: not a pytest-hwopt history store: "
                                           r"another SQLite database \(tables: customers\)"):
        history.open_store(path)
    assert path.read_bytes() == before


def test_a_store_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "h.sqlite"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(HistoryError, match="newer pytest-hwopt"):
        history.open_store(path)


def test_a_directory_or_a_missing_store_to_read_is_an_error(tmp_path):
    with pytest.raises(HistoryError, match="is a directory"):
        history.open_store(tmp_path)
    with pytest.raises(HistoryError, match="no such history store"):
        history.open_store(tmp_path / "missing.sqlite", create=False)
