"""The GPU check off a GPU: its sections, verdicts and summary files, driven with fakes.

These run everywhere (nothing here needs CUDA); the inner pytest runs use this folder's
conftest.py as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import gpu_check
import pytest
from gpu_check import ROOT, SKIPPED, Section

CONFTEST = Path(__file__).with_name("conftest.py")
CUDA_TESTS = Path(__file__).with_name("test_cuda_paths.py")
SECTIONS = ["facts", "timers", "l2_flush", "cuda_graph", "nvml", "peaks", "memory", "engine",
            "timer_streams", "cold_cache", "compile_reduce_overhead", "tensorrt", "onnxruntime",
            "nvml_device_and_power", "capture_failure", "suites"]

FAKE_SECTIONS = '''
import json

import pytest


def test_ok(gpu_record):
    gpu_record(summary="x = 1 | y = inf", value=float("inf"))
    gpu_record.fact(gpu="Fake GPU 80GB")
    gpu_record.check("holds", True, "fine")


def test_bad(gpu_record):
    gpu_record.check("does not hold", False, "1.5 ms vs 1.0 ms")
    gpu_record.check("checked after a failed one", True)
    gpu_record(summary="off")


def test_broken(gpu_record):
    gpu_record(partial=1)
    raise RuntimeError("CUDA error: out of memory")


@pytest.mark.gpu_check(min_s=1e6)
def test_slow(gpu_record):
    raise AssertionError("must be skipped, not run")


def test_summary_is_on_disk_while_running(gpu_out):
    data = json.loads((gpu_out / "gpu-check.json").read_text())
    assert data["status"] == "running"
    assert list(data["sections"]) == ["ok", "bad", "broken", "slow"]


def test_not_a_section():
    pass
'''


def _fake_torch(version: str, cuda: str | None, available: bool = False) -> ModuleType:
    torch = ModuleType("torch")
    torch.__version__ = version  # type: ignore[attr-defined]
    torch.version = SimpleNamespace(cuda=cuda)  # type: ignore[attr-defined]
    torch.cuda = SimpleNamespace(is_available=lambda: available)  # type: ignore[attr-defined]
    return torch


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary believes CUDA is usable, with torch 9.9 built for CUDA 12.8."""
    torch = _fake_torch("9.9", "12.8", available=True)
    monkeypatch.setattr(gpu_check, "cuda_or_reason", lambda: (torch, None))


@pytest.fixture
def check_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytest project with the GPU check's conftest.py and no output folder set."""
    monkeypatch.delenv("HWOPT_GPU_CHECK_OUT", raising=False)
    pytester.makeconftest(CONFTEST.read_text())
    return pytester


def _summary(out: Path) -> dict[str, object]:
    data = json.loads((out / gpu_check.JSON_NAME).read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.usefixtures("fake_cuda")
def test_sections_record_checks_errors_and_budget_skips(check_dir: pytest.Pytester) -> None:
    check_dir.makepyfile(test_fake=FAKE_SECTIONS)
    out = check_dir.path / "out"
    result = check_dir.runpytest(f"--gpu-check-out={out}", "--gpu-check-budget-s=1000",
                                 "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*1 check(s) of section 'bad' failed:",
                                 "*does not hold: 1.5 ms vs 1.0 ms"])
    data = _summary(out)
    assert data["status"] == "failed: 2 check(s) failed, 1 section(s) raised"
    assert data["budget_s"] == 1000.0 and isinstance(data["seconds"], float)
    facts = data["facts"]
    assert isinstance(facts, dict)
    assert (facts["torch"], facts["cuda"], facts["gpu"]) == ("9.9", "12.8", "Fake GPU 80GB")
    assert facts["python"] == sys.version.split()[0]
    sections = data["sections"]
    assert isinstance(sections, dict)
    assert list(sections) == ["ok", "bad", "broken", "slow"]  # plain tests are no sections
    assert [s["status"] for s in sections.values()] == ["ok", "ok", "error", "skipped"]
    assert sections["ok"]["result"] == {"summary": "x = 1 | y = inf", "value": "inf"}
    assert isinstance(sections["ok"]["seconds"], float)
    assert sections["broken"]["error"] == "RuntimeError: CUDA error: out of memory"
    assert "raise RuntimeError" in sections["broken"]["traceback"]
    assert sections["broken"]["result"] == {"partial": 1}
    assert sections["slow"]["status"] == "skipped"
    assert sections["slow"]["reason"] in ("time budget: 1000 s left, needs ~1000000 s",
                                          "time budget: 999 s left, needs ~1000000 s")
    assert data["checks"] == [
        {"section": "ok", "check": "holds", "ok": True, "detail": "fine"},
        {"section": "bad", "check": "does not hold", "ok": False, "detail": "1.5 ms vs 1.0 ms"},
        {"section": "bad", "check": "checked after a failed one", "ok": True, "detail": ""},
        {"section": "broken", "check": gpu_check.RAISED, "ok": False,
         "detail": "RuntimeError: CUDA error: out of memory"}]
    markdown = (out / gpu_check.MARKDOWN_NAME).read_text()
    assert "**Status:** failed: 2 check(s) failed, 1 section(s) raised" in markdown
    assert "**gpu:** Fake GPU 80GB" in markdown
    assert "| FAIL | bad | does not hold | 1.5 ms vs 1.0 ms |" in markdown
    assert "| ok | ok |" in markdown
    assert "x = 1 / y = inf" in markdown  # a pipe would break the table
    assert f"| slow | skipped |  | {sections['slow']['reason']} |" in markdown


def test_no_cuda_writes_skipped_summary(check_dir: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "cuda_or_reason", lambda: (None, "no torch here"))
    check_dir.makepyfile(test_fake='''
        def test_timers(gpu_record, cuda_torch):
            raise AssertionError("must be skipped, not run")
    ''')
    out = check_dir.path / "out"
    result = check_dir.runpytest(f"--gpu-check-out={out}", "-rs", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * no torch here"])
    data = _summary(out)
    assert data["status"] == SKIPPED and data["reason"] == "no torch here"
    assert data["sections"] == {"timers": {"status": "skipped", "reason": "no torch here"}}
    assert data["checks"] == []
    assert "skipped: no CUDA device" in (out / gpu_check.MARKDOWN_NAME).read_text()


@pytest.mark.usefixtures("fake_cuda")
def test_out_from_the_environment_and_none_by_default(check_dir: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    check_dir.makepyfile(test_fake="def test_one(gpu_record):\n    gpu_record(summary='1')\n")
    check_dir.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not list(check_dir.path.rglob(gpu_check.JSON_NAME))
    out = check_dir.path / "from-env"
    monkeypatch.setenv("HWOPT_GPU_CHECK_OUT", str(out))
    check_dir.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert _summary(out)["status"] == "ok"


def test_sections_from_xdist_workers_reach_the_summary(check_dir: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(CONFTEST.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # the controller is a child process here: it believes in CUDA through its conftest
    check_dir.makeconftest(CONFTEST.read_text()
                           + "\ngpu_check.cuda_or_reason = lambda: (None, None)\n")
    check_dir.makepyfile(test_fake='''
        def test_one(gpu_record):
            gpu_record(summary="one")
            gpu_record.check("held", True)

        def test_two(gpu_record):
            gpu_record.check("did not hold", False, "far off")
    ''')
    out = check_dir.path / "out"
    result = check_dir.runpytest_subprocess(f"--gpu-check-out={out}", "-n", "2",
                                            "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    data = _summary(out)
    assert sorted(data["sections"]) == ["one", "two"]  # type: ignore[call-overload]
    assert data["status"] == "failed: 1 check(s) failed, 0 section(s) raised"


def test_cuda_tests_skip_with_the_reason_without_a_gpu(tmp_path: Path) -> None:
    """The real CUDA tests, run as the shell script runs them, with every GPU hidden: each
    skips with what torch reports, and the summary says why."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    for name in ("PYTHONPATH", "HWOPT_GPU_CHECK_OUT"):
        env.pop(name, None)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(CUDA_TESTS), f"--gpu-check-out={out}",
         "--gpu-check-budget-s=470", "-p", "no:cacheprovider", "-rs", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = _summary(out)
    reason = data["reason"]
    assert data["status"] == SKIPPED
    assert isinstance(reason, str) and reason.startswith("CUDA not available: ")
    assert "torch.cuda.is_available() == False with CUDA_VISIBLE_DEVICES=''" in reason
    assert data["sections"] == {name: {"status": "skipped", "reason": reason}
                                for name in SECTIONS}
    assert data["checks"] == []
    assert proc.stdout.count(reason) == len(SECTIONS)  # -rs lists each skip with it
    assert (out / gpu_check.MARKDOWN_NAME).exists()


# -- the pieces, one by one ----------------------------------------------------------


def test_section_records_and_entries() -> None:
    section = Section("timers")
    section(op="matmul", ms=1.5)
    assert section.check("agree", True) and not section.check("small", False, "0.9")
    section.fact(gpu="X")
    assert [c["check"] for c in section.failed()] == ["small"]
    section.seconds = 1.23456
    assert section.entry() == {"status": "ok", "result": {"op": "matmul", "ms": 1.5},
                               "seconds": 1.235}
    section.raised("ValueError: bad", "tb")
    section.raised("TypeError: later", "tb2")  # the first error is the one kept
    assert section.entry()["error"] == "ValueError: bad"
    assert section.payload()["checks"][-1] == {"section": "timers", "check": gpu_check.RAISED,
                                               "ok": False, "detail": "ValueError: bad"}
    section.skipped("why")
    assert section.entry() == {"status": "skipped", "reason": "why"}
    assert section.payload()["facts"] == {"gpu": "X"}


def test_checks_failed_message() -> None:
    message = str(gpu_check.ChecksFailed("peaks", [
        {"check": "copy bandwidth", "detail": "10 of 4800 GB/s"}, {"check": "cached",
                                                                  "detail": ""}]))
    assert message == ("2 check(s) of section 'peaks' failed:\n"
                       "  copy bandwidth: 10 of 4800 GB/s\n  cached")


def test_overall_status() -> None:
    assert gpu_check.overall_status({"status": SKIPPED}) == SKIPPED
    assert gpu_check.overall_status({"checks": [{"ok": True}], "sections": {}}) == "ok"
    assert gpu_check.overall_status(
        {"checks": [{"ok": True}], "sections": {"a": {"status": "error"}}}) == \
        "failed: 0 check(s) failed, 1 section(s) raised"


def test_timers_verdict() -> None:
    good = gpu_check.timers_verdict(0.02, 2.9, 2.8)
    assert good["agree"] and good["unsynced_small"]
    assert good["synced_vs_events"] == pytest.approx(0.1 / 2.8)
    assert not gpu_check.timers_verdict(0.02, 3.2, 2.8)["agree"]
    assert not gpu_check.timers_verdict(1.0, 2.8, 2.8)["unsynced_small"]


def test_budget_skip_reason() -> None:
    assert gpu_check.budget_skip_reason(None, 60.0) is None
    assert gpu_check.budget_skip_reason(60.0, 60.0) is None
    assert gpu_check.budget_skip_reason(12.4, 60.0) == "time budget: 12 s left, needs ~60 s"


def test_summary_seconds_and_facts(tmp_path: Path) -> None:
    now = [100.0]
    torch = _fake_torch("9.9", None)
    summary = gpu_check.Summary((torch, "CUDA not available: x"), None, clock=lambda: now[0])
    now[0] += 2.5
    summary.finish()
    summary.write(tmp_path)
    data = _summary(tmp_path)
    assert data["seconds"] == 2.5 and data["budget_s"] is None
    assert data["status"] == SKIPPED and data["reason"] == "CUDA not available: x"
    assert data["facts"]["torch"] == "9.9"  # type: ignore[index]


def test_cuda_or_reason_says_what_was_found(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_torch = _fake_torch("2.13.0+cpu", None)
    monkeypatch.setitem(sys.modules, "torch", cpu_torch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_check.cuda_or_reason() == (cpu_torch, (
        "CUDA not available: torch 2.13.0+cpu (a CPU build) reports "
        "torch.cuda.is_available() == False"))
    cuda_build = _fake_torch("2.13.0+cu128", "12.8")
    monkeypatch.setitem(sys.modules, "torch", cuda_build)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_check.cuda_or_reason() == (cuda_build, (
        "CUDA not available: torch 2.13.0+cu128 (CUDA 12.8) reports "
        "torch.cuda.is_available() == False with CUDA_VISIBLE_DEVICES=''"))
    gpu_torch = _fake_torch("2.13.0+cu128", "12.8", available=True)
    monkeypatch.setitem(sys.modules, "torch", gpu_torch)
    assert gpu_check.cuda_or_reason() == (gpu_torch, None)
    monkeypatch.setitem(sys.modules, "torch", None)  # import fails
    torch, why = gpu_check.cuda_or_reason()
    assert torch is None and why is not None
    assert why.startswith("CUDA not available: PyTorch is not installed (")


def test_clean_makes_json_safe() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert gpu_check.clean({"a": [float("nan"), 1.5, (2, None)], 3: Thing()}) == \
        {"a": ["nan", 1.5, [2, None]], "3": "<thing>"}


def test_subprocess_env_puts_checkout_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", str(ROOT)]))
    assert gpu_check.subprocess_env()["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]


# -- the shell wrapper -------------------------------------------------------------------

SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def test_shell_wrapper_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_shell_wrapper_runs_the_gpu_tests(tmp_path: Path) -> None:
    """With a stand-in Python that logs its arguments: the wrapper runs pytest on tests/gpu
    with the output folder, the budget and any extra arguments."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexit 0\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out), "-k", "timers"],
                          env=dict(os.environ, PYTHON=str(fake)), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "-c import pytest, numpy"
    assert calls[-1] == (f"-m pytest tests/gpu --gpu-check-out={out} --gpu-check-budget-s=470 "
                         "-p no:cacheprovider -W default -v -rs -k timers")


def test_shell_wrapper_says_what_it_needs(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")],
                          env=dict(os.environ, PYTHON=str(fake)), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot import pytest and numpy" in proc.stderr


# -- the verdicts of the sections that prove each path on first contact ---------------------


def test_stream_cases_cover_both_streams_and_a_second_gpu() -> None:
    assert gpu_check.stream_cases(1) == [("cuda:0, default stream", 0, False),
                                         ("cuda:0, dedicated stream", 0, True)]
    assert gpu_check.stream_cases(2)[-1] == ("cuda:1, default stream", 1, False)


def test_cold_plan_verdict() -> None:
    assert gpu_check.cold_plan_verdict(1, 12) == (
        True, "cold: 1 call(s) per sample, warm: 12")
    assert gpu_check.cold_plan_verdict(12, 12)[0] is False


def test_default_stream_warnings_are_picked_out() -> None:
    warnings = ["Using default stream in enqueueV3() may lead to performance issues due to "
                "additional calls to cudaStreamSynchronize() by TensorRT",
                "Missing scale and zero-point for tensor x"]
    assert gpu_check.default_stream_warnings(warnings) == warnings[:1]
    assert gpu_check.default_stream_warnings(warnings[1:]) == []


def test_outputs_verdict() -> None:
    assert gpu_check.outputs_verdict(0.01, 2.0, 1e-2, 1e-2) == (True, "max |diff| 0.01 "
                                                                      "(allowed 0.03)")
    assert gpu_check.outputs_verdict(0.5, 2.0, 1e-2, 1e-2)[0] is False


def test_provider_verdict() -> None:
    assert gpu_check.provider_verdict(["CUDAExecutionProvider", "CPUExecutionProvider"],
                                      "CUDAExecutionProvider")[0]
    assert not gpu_check.provider_verdict(["CPUExecutionProvider"],
                                          "CUDAExecutionProvider")[0]
    assert not gpu_check.provider_verdict([], "CUDAExecutionProvider")[0]


def test_nvml_match_verdict() -> None:
    facts = {"matched_by": "uuid", "uuid": "GPU-58a4-12"}
    assert gpu_check.nvml_match_verdict(facts, "58a4-12")[0]
    assert not gpu_check.nvml_match_verdict(facts, "ffff-00")[0]  # another GPU
    assert gpu_check.nvml_match_verdict({"matched_by": "pci_bus_id", "uuid": "GPU-x"}, None)[0]
    ok, detail = gpu_check.nvml_match_verdict({"matched_by": "index", "uuid": "GPU-x"}, "x")
    assert not ok and "matched by index" in detail


def test_power_verdict() -> None:
    assert gpu_check.power_verdict(70.0, 450.0, 700.0)[0]
    assert not gpu_check.power_verdict(70.0, 65.0, 700.0)[0]  # not busy
    assert not gpu_check.power_verdict(70.0, 800.0, 700.0)[0]  # over the limit
    assert not gpu_check.power_verdict(None, 450.0, 700.0)[0]


def test_child_checks_read_a_json_report() -> None:
    report = {"checks": [
        {"kind": "accuracy", "variant": "torch-compile", "status": "passed",
         "message": "max |diff| 1e-6"},
        {"kind": "speedup", "variant": "x", "status": "failed", "message": "0.9x < 2x"}]}
    assert gpu_check.child_checks(report) == [
        ("accuracy of torch-compile", True, "passed: max |diff| 1e-6"),
        ("speedup of x", False, "failed: 0.9x < 2x")]


def test_child_session_runs_a_test_file_with_the_plugin(tmp_path: Path) -> None:
    """The helper the torch.compile section uses, on the CPU: a fresh session, its JSON."""
    source = '''
def test_sum(hwopt_bench):
    hwopt_bench.measure("sum", lambda: sum(range(100)))
'''
    rc, report, tail = gpu_check.child_session(source, tmp_path / "child", [
        "--hwopt-device=cpu", "--hwopt-max-time=0.2", "--hwopt-min-rounds=3",
        "--hwopt-warmup-ms=1", "--hwopt-block-ms=1", "--hwopt-processes=0"], timeout=120)
    assert rc == 0, tail
    assert [r["variant"] for r in report["results"]] == ["sum"]
    assert (tmp_path / "child" / "test_child.py").exists()


def test_shell_wrapper_writes_under_docs_results_by_default(tmp_path: Path) -> None:
    text = SCRIPT.read_text()
    assert 'out="${1:-$root/docs/results/gpu-check}"' in text
    assert "--no-index" in text  # nothing from the network
