"""scripts/gpu_check.py off a GPU: the skipped report, and its plumbing with fake sections."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cuda_writes_skipped_report(gpu_check: ModuleType, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(gpu_check, "cuda_or_reason", lambda: (None, "no torch here"))
    assert gpu_check.main([str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["status"] == "skipped: no CUDA device"
    assert report["reason"] == "no torch here"
    assert report["sections"] == {} and report["checks"] == []
    assert "skipped: no CUDA device" in (tmp_path / "gpu-check.md").read_text()


def test_script_on_this_machine_without_gpu(tmp_path: Path) -> None:
    """Run as the brief says, in a child; hiding GPUs makes it skip on any machine."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["status"] == "skipped: no CUDA device"
    assert report["reason"]
    assert (out / "gpu-check.md").exists()


def test_run_sections_records_errors_and_goes_on(gpu_check: ModuleType) -> None:
    now = [0.0]
    saves: list[str] = []

    def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        now[0] += 2.0
        gpu_check.check(ctx, "ok", "a check that holds", True, "fine")
        return {"summary": "all good"}

    def broken(ctx: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("CUDA error: out of memory")

    def slow(ctx: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("must be skipped, not run")

    ctx: dict[str, Any] = {"deadline": 10.0, "checks": []}
    results = gpu_check.run_sections(
        [("ok", ok, 1.0), ("broken", broken, 1.0), ("slow", slow, 60.0), ("again", ok, 1.0)],
        ctx, clock=lambda: now[0], after=lambda: saves.append("saved"))
    assert [results[n]["status"] for n in ("ok", "broken", "slow", "again")] == \
        ["ok", "error", "skipped", "ok"]
    assert results["ok"]["result"] == {"summary": "all good"}
    assert results["ok"]["seconds"] == 2.0
    assert "out of memory" in results["broken"]["error"]
    assert "Traceback" in results["broken"]["traceback"]
    assert "needs ~60 s" in results["slow"]["reason"]
    assert len(saves) == 3  # after each section that ran
    failed = [c for c in ctx["checks"] if not c["ok"]]
    assert [c["section"] for c in failed] == ["broken"]


def test_run_with_fake_sections_writes_report_and_fails(
        gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    fake_torch = SimpleNamespace(__version__="9.9", version=SimpleNamespace(cuda="12.8"))
    monkeypatch.setattr(gpu_check, "cuda_or_reason", lambda: (fake_torch, None))

    def good(ctx: dict[str, Any]) -> dict[str, Any]:
        gpu_check.check(ctx, "good", "holds", True)
        return {"summary": "x = 1 | y = inf", "value": float("inf")}

    def bad(ctx: dict[str, Any]) -> dict[str, Any]:
        gpu_check.check(ctx, "bad", "does not hold", False, "1.5 ms vs 1.0 ms")
        return {"summary": "off"}

    report = gpu_check.run(tmp_path, 60.0, sections=[("good", good, 0.0), ("bad", bad, 0.0)])
    assert report["status"] == "failed: 1 check(s) failed, 0 section(s) raised"
    data = json.loads((tmp_path / "gpu-check.json").read_text())
    assert data["facts"]["torch"] == "9.9" and data["facts"]["cuda"] == "12.8"
    assert data["sections"]["good"]["result"]["value"] == "inf"  # JSON-safe
    markdown = (tmp_path / "gpu-check.md").read_text()
    assert "| FAIL | bad | does not hold | 1.5 ms vs 1.0 ms |" in markdown
    assert "| good | ok |" in markdown
    assert "x = 1 / y = inf" in markdown  # a pipe would break the table


def test_overall_status(gpu_check: ModuleType) -> None:
    assert gpu_check.overall_status({"status": "skipped: no CUDA device"}) == \
        "skipped: no CUDA device"
    assert gpu_check.overall_status({"checks": [{"ok": True}], "sections": {}}) == "ok"
    assert gpu_check.overall_status(
        {"checks": [{"ok": True}], "sections": {"a": {"status": "error"}}}) == \
        "failed: 0 check(s) failed, 1 section(s) raised"


def test_timers_verdict(gpu_check: ModuleType) -> None:
    good = gpu_check.timers_verdict(0.02, 2.9, 2.8)
    assert good["agree"] and good["unsynced_small"]
    assert good["synced_vs_events"] == pytest.approx(0.1 / 2.8)
    assert not gpu_check.timers_verdict(0.02, 3.2, 2.8)["agree"]
    assert not gpu_check.timers_verdict(1.0, 2.8, 2.8)["unsynced_small"]


def test_clean_makes_json_safe(gpu_check: ModuleType) -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert gpu_check.clean({"a": [float("nan"), 1.5, (2, None)], 3: Thing()}) == \
        {"a": ["nan", 1.5, [2, None]], "3": "<thing>"}


def test_subprocess_env_puts_checkout_first(gpu_check: ModuleType,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", str(ROOT)]))
    assert gpu_check.subprocess_env()["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]


def test_shell_wrapper_is_valid_bash() -> None:
    script = ROOT / "scripts" / "gpu-check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
