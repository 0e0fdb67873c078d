"""Unit tests for pytest_hwopt.results.baseline and the ``pytest-hwopt compare`` command line."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_hwopt.results import baseline
from pytest_hwopt.results.baseline import (
    IMPROVEMENT,
    MISSING,
    NEW,
    REGRESSION,
    UNCHANGED,
    BaselineError,
    compare_documents,
    compare_samples,
    environment_mismatch,
    load_document,
    parse_threshold,
)


def noisy(median_ms: float, n: int = 200, seed: int = 0, spread: float = 0.02) -> list[float]:
    rng = random.Random(seed)
    return [median_ms * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def doc(rows: dict[tuple[str, str], list[float]], **environment) -> dict:
    return {"version": "0.1.0", "format": 1, "environment": environment, "tests": [],
            "checks": [],
            "results": [{"test": t, "variant": v, "samples": s, "median_ms": 0.0}
                        for (t, v), s in rows.items()]}


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# ---- loading --------------------------------------------------------------------------------

def test_load_document_accepts_a_results_document(tmp_path):
    data = doc({("t.py::a", "x"): [1.0, 2.0]})
    assert load_document(write(tmp_path / "run.json", data)) == data


@pytest.mark.parametrize("content,words", [
    ("{not json", ["not a pytest-hwopt results file", "not JSON"]),
    ("[1, 2]", ["no 'results' and 'version' keys"]),
    ('{"version": "1"}', ["no 'results'"]),
    ('{"benchmarks": [], "version": "5.1.0", "machine_info": {}}',
     ["no 'results'", "pytest-benchmark file?"]),
    ('{"version": "1", "results": {}}', ["'results' must be a list"]),
    ('{"version": "1", "results": [{"test": "t"}]}', ["results[0] has no 'test' and 'variant'"]),
    ('{"version": "1", "results": [{"test": "t", "variant": "v"}]}', ["no raw 'samples'"]),
    ('{"version": "1", "results": [{"test": "t", "variant": "v", "samples": []}]}',
     ["no raw 'samples'"]),
    ('{"version": "1", "results": [{"test": "t", "variant": "v", "samples": ["1"]}]}',
     ["no raw 'samples'"]),
    ('{"version": "1", "results": [], "environment": []}', ["'environment' must be an object"]),
])
def test_load_document_rejects_foreign_files_naming_them(tmp_path, content, words):
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(BaselineError) as info:
        load_document(path)
    assert str(info.value).startswith(f"{path}: ")
    for word in words:
        assert word in str(info.value)


def test_load_document_missing_file(tmp_path):
    with pytest.raises(BaselineError, match="nope.json: no such file"):
        load_document(tmp_path / "nope.json")


# ---- thresholds -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("10%", 0.10), ("2.5%", 0.025), ("0.1", 0.1), (0.25, 0.25), ("150%", 1.5),
    (None, 0.10), ("", 0.10), (" 5% ", 0.05),
])
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text,words", [
    ("abc", "percentage like 10%"), ("0", "positive"), ("-5%", "positive"),
    ("10", "ambiguous"), ("nan", "positive"),
])
def test_parse_threshold_rejects(text, words):
    with pytest.raises(ValueError, match=words):
        parse_threshold(text)


# ---- comparing ------------------------------------------------------------------------------

def test_a_significant_slow_down_beyond_the_threshold_is_a_regression():
    row = compare_samples("t", "v", noisy(1.0), noisy(1.5, seed=1), 0.10)
    assert row.verdict == REGRESSION
    assert row.ratio == pytest.approx(1.5, rel=0.02)
    assert row.p < 1e-6
    assert row.describe(0.10).startswith("regression of v vs baseline: median 1")
    assert "1.50x slower" in row.describe(0.10) and "> 1.10x allowed" in row.describe(0.10)


def test_a_significant_speed_up_beyond_the_threshold_is_an_improvement():
    row = compare_samples("t", "v", noisy(1.0), noisy(0.5, seed=1), 0.10)
    assert row.verdict == IMPROVEMENT
    assert row.describe(0.10).startswith("improved: v vs baseline")
    assert "2.00x faster" in row.describe(0.10)


def test_small_but_significant_changes_are_unchanged():
    row = compare_samples("t", "v", noisy(1.0), noisy(1.05, seed=1), 0.10)
    assert row.p < 0.01
    assert row.verdict == UNCHANGED
    # the improvement threshold is the same factor: 1 / 1.1 = 0.909
    assert compare_samples("t", "v", noisy(1.0), noisy(0.92, seed=1), 0.10).verdict == UNCHANGED


def test_large_but_not_significant_changes_are_unchanged():
    row = compare_samples("t", "v", [1.0, 3.0, 1.0], [3.0, 1.0, 3.0], 0.10)
    assert row.ratio == pytest.approx(3.0)
    assert row.p > 0.01
    assert row.verdict == UNCHANGED


def test_threshold_is_respected():
    old, new = noisy(1.0), noisy(1.3, seed=1)
    assert compare_samples("t", "v", old, new, 0.10).verdict == REGRESSION
    assert compare_samples("t", "v", old, new, 0.50).verdict == UNCHANGED


def test_compare_documents_rows_in_order_with_new_and_missing():
    old = doc({("a.py::t", "slow"): noisy(1.0), ("a.py::t", "fast"): noisy(0.1),
               ("gone.py::t", "x"): noisy(1.0)})
    new = doc({("a.py::t", "slow"): noisy(1.0, seed=2), ("a.py::t", "fast"): noisy(0.2, seed=3),
               ("a.py::t", "fastest"): noisy(0.05), ("new.py::t", "y"): noisy(2.0)})
    rows = compare_documents(old, new, 0.10)
    assert [(r.test, r.variant, r.verdict) for r in rows] == [
        ("a.py::t", "slow", UNCHANGED), ("a.py::t", "fast", REGRESSION),
        ("a.py::t", "fastest", NEW), ("new.py::t", "y", NEW), ("gone.py::t", "x", MISSING)]
    assert rows[2].baseline_ms is None and rows[2].current_ms == pytest.approx(0.05, rel=0.05)
    assert rows[4].current_ms is None and rows[4].ratio is None and rows[4].p is None
    assert baseline.counts(rows) == {UNCHANGED: 1, REGRESSION: 1, NEW: 2, MISSING: 1}
    assert baseline.summary_line(rows, 0.1) == (
        "1 regression, 1 unchanged, 2 new, 1 missing (threshold 10%, p < 0.01)")
    lines = baseline.format_table(rows)
    assert lines[0].split() == list(baseline.TABLE_HEADER)
    cells = lines[3].split()
    assert cells[:2] == ["a.py::t", "fast"] and cells[-1] == REGRESSION
    assert float(cells[-3].rstrip("x")) == pytest.approx(2.0, rel=0.05)
    assert lines[-1].split()[-3:] == ["-", "-", MISSING]


def test_a_repeated_test_keeps_its_last_run():
    data = doc({})
    data["results"] = [{"test": "t", "variant": "v", "samples": [1.0]},
                       {"test": "t", "variant": "v", "samples": [2.0]}]
    assert baseline.samples_by_test(data) == {"t": {"v": [2.0]}}


# ---- environment ----------------------------------------------------------------------------

def test_environment_mismatch_lists_what_changes_timings():
    a = {"gpu": "NVIDIA A100", "cpu": "EPYC", "threads": 8, "python": "3.11.7",
         "versions": {"torch": "2.3.0", "onnxruntime": "1.18.0", "pytest": "8.0"},
         "hostname": "a"}
    b = {"gpu": "NVIDIA H100", "cpu": "EPYC", "threads": 16, "python": "3.11.7",
         "versions": {"torch": "2.4.0", "tensorrt": "10.0", "pytest": "8.1"}, "hostname": "b"}
    assert environment_mismatch(a, b) == [
        "gpu: baseline NVIDIA A100, now NVIDIA H100",
        "torch: baseline 2.3.0, now 2.4.0",
        "onnxruntime: baseline 1.18.0, now none",
        "tensorrt: baseline none, now 10.0",
        "threads: baseline 8, now 16",
    ]
    assert environment_mismatch(a, dict(a)) == []
    assert environment_mismatch({}, {}) == []
    # what one side does not record is not a difference
    assert environment_mismatch({}, b) == []
    assert environment_mismatch({"threads": 8}, {"versions": {"torch": "2.4"}}) == []
    # a GPU against a CPU run, once the CPU run names its device
    assert environment_mismatch({"gpu": "NVIDIA H100"}, {"device": "cpu"}) == [
        "gpu: baseline NVIDIA H100, now none"]
    assert environment_mismatch({"gpu": "NVIDIA H100"}, {"cpu": "EPYC"}) == []


# ---- saved runs -----------------------------------------------------------------------------

def test_machine_key_is_a_safe_file_name():
    assert baseline.machine_key("build-07.lab", "NVIDIA H100 80GB HBM3") == (
        "build-07.lab-NVIDIA_H100_80GB_HBM3")
    assert baseline.machine_key("", "Intel(R) Xeon(R) @ 2.0GHz") == "host-Intel_R_Xeon_R_2.0GHz"
    assert "/" not in baseline.machine_key("a/b", "../../etc")
    assert len(baseline.machine_key("h" * 200, "d")) <= 100
    assert baseline.machine_key_of({"hostname": "h", "cpu": "EPYC"}) == "h-EPYC"
    assert baseline.machine_key_of({"hostname": "h", "cpu": "EPYC", "gpu": "H100",
                                    "device_name": "H100"}) == "h-H100"


def test_numbered_saves_never_overwrite(tmp_path):
    directory = tmp_path / "m"
    first = baseline.save_numbered(directory, "main", doc({("t", "v"): [1.0]}))
    second = baseline.save_numbered(directory, "main", doc({("t", "v"): [2.0]}))
    third = baseline.save_numbered(directory, "pr-1", doc({("t", "v"): [3.0]}))
    assert [p.name for p in (first, second, third)] == [
        "0001_main.json", "0002_main.json", "0003_pr-1.json"]
    assert load_document(first)["results"][0]["samples"] == [1.0]
    assert baseline.find_saved(directory, "main") == second
    assert baseline.find_saved(directory, "0001") == first
    assert baseline.find_saved(directory, "pr-1") == third
    assert baseline.find_saved(directory, "other") is None
    assert baseline.find_saved(tmp_path / "none", "main") is None
    (directory / "0007_x.json").write_text("{}")
    assert baseline.next_path(directory, "y").name == "0008_y.json"


@pytest.mark.parametrize("name,ok", [("main", True), ("pr-12.rc_1", True), ("-x", False),
                                     ("a b", False), ("", False)])
def test_run_names(name, ok):
    if ok:
        baseline.check_name(name)
    else:
        with pytest.raises(ValueError):
            baseline.check_name(name)


# ---- command line ---------------------------------------------------------------------------

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_hwopt", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def runs(tmp_path):
    old = write(tmp_path / "old.json", doc({("a.py::t", "slow"): noisy(1.0),
                                            ("a.py::t", "fast"): noisy(0.1)},
                                           gpu="NVIDIA A100", threads=8))
    new = write(tmp_path / "new.json", doc({("a.py::t", "slow"): noisy(1.0, seed=5),
                                            ("a.py::t", "fast"): noisy(0.2, seed=6)},
                                           gpu="NVIDIA A100", threads=4))
    return old, new


def test_cli_prints_the_table(runs, tmp_path):
    old, new = runs
    result = cli("compare", str(old), str(new), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "environment differs: threads: baseline 8, now 4" in out
    assert any(line.split()[:2] == ["a.py::t", "fast"] and line.split()[-1] == REGRESSION
               for line in out.splitlines())
    assert any(line.split()[:2] == ["a.py::t", "slow"] and line.split()[-1] == UNCHANGED
               for line in out.splitlines())
    assert "1 regression, 1 unchanged (threshold 10%, p < 0.01)" in out


def test_cli_fails_on_regression_only_when_asked(runs, tmp_path):
    old, new = runs
    assert cli("compare", str(old), str(new), "--fail-on-regression", cwd=tmp_path
               ).returncode == 1
    relaxed = cli("compare", str(old), str(new), "--fail-on-regression",
                  "--max-regression", "150%", cwd=tmp_path)
    assert relaxed.returncode == 0
    assert "2 unchanged (threshold 150%" in relaxed.stdout
    assert cli("compare", str(old), str(old), "--fail-on-regression", "--max-regression",
               "0.05", cwd=tmp_path).returncode == 0


def test_cli_bad_files_exit_2_naming_the_file(runs, tmp_path):
    old, _ = runs
    bad = write(tmp_path / "corrupt.json", "{oops")
    result = cli("compare", str(old), str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}: not a pytest-hwopt results file: not JSON" in result.stderr
    foreign = write(tmp_path / "bench.json", {"benchmarks": [], "version": "5.1.0"})
    result = cli("compare", str(foreign), str(old), cwd=tmp_path)
    assert result.returncode == 2 and f"{foreign}: not a pytest-hwopt results file" in result.stderr
    result = cli("compare", str(tmp_path / "missing.json"), str(old), cwd=tmp_path)
    assert result.returncode == 2 and "missing.json: no such file" in result.stderr
    result = cli("compare", str(old), str(old), "--max-regression", "lots", cwd=tmp_path)
    assert result.returncode == 2 and "--max-regression=lots" in result.stderr
    assert cli("compare", str(old), cwd=tmp_path).returncode == 2  # argparse: missing file
    assert cli(cwd=tmp_path).returncode == 2


def test_console_script_is_the_same_command(runs, tmp_path):
    script = Path(sys.executable).with_name("pytest-hwopt")
    if not script.exists():
        pytest.skip("pytest-hwopt console script not installed in this environment")
    old, new = runs
    result = subprocess.run([str(script), "compare", str(old), str(new)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "regression" in result.stdout


def test_main_in_process(runs, capsys):
    from pytest_hwopt.__main__ import main

    old, new = runs
    assert main(["compare", str(old), str(new), "--fail-on-regression"]) == 1
    assert "a.py::t" in capsys.readouterr().out
