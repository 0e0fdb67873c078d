"""The GPU check's records: one section per CUDA test, its checks, and the summary files.

``tests/gpu/conftest.py`` drives these from pytest's hooks; ``test_check_summary.py``
drives them with fakes. Nothing here imports pytest, or torch at import time.

The summary is ``gpu-check.json`` (everything measured, every check) and ``gpu-check.md``
(a short table)::

    {"status": "ok" | "running" | "skipped: no CUDA device" | "failed: N check(s) failed,
               M section(s) raised",
     "reason": "...",                      (only when skipped)
     "started": "2026-...T...+0000", "seconds": 93.1, "budget_s": 470.0 | null,
     "facts": {"python", "platform", "hostname", "torch", "cuda", "gpu", "driver", ...},
     "checks": [{"section", "check", "ok", "detail"}, ...],
     "sections": {name: {"status": "ok", "result": {..., "summary"}, "seconds"}
                      | {"status": "error", "error", "traceback", "seconds"}
                      | {"status": "skipped", "reason"}}}
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_hwopt.results.jsonio import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
JSON_NAME = "gpu-check.json"
MARKDOWN_NAME = "gpu-check.md"
SKIPPED = "skipped: no CUDA device"
RAISED = "section ran without an exception"


# -- the machine --------------------------------------------------------------


def cuda_or_reason() -> tuple[ModuleType | None, str | None]:
    """``(torch, None)`` when a CUDA device is usable, else ``(torch or None, why not)``."""
    try:
        import torch
    except ImportError as exc:
        return None, f"CUDA not available: PyTorch is not installed ({exc})"
    if torch.cuda.is_available():
        return torch, None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
    why = (f"CUDA not available: torch {torch.__version__} ({build}) reports "
           "torch.cuda.is_available() == False")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        why += f" with CUDA_VISIBLE_DEVICES={visible!r}"
    return torch, why


def host_facts() -> dict[str, str]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "hostname": platform.node()}


def subprocess_env(root: Path = ROOT) -> dict[str, str]:
    """The environment for child Pythons: this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    parts = [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def plugin_entry_point() -> bool:
    """Whether pytest loads the plugin by itself (the package is installed)."""
    from importlib.metadata import entry_points

    return any(ep.name == "hwopt" for ep in entry_points(group="pytest11"))


def child_session(test_source: str, folder: Path, args: list[str],
                  timeout: float | None = None) -> tuple[int, dict[str, Any], str]:
    """Run ``test_source`` as a test file in a fresh pytest session with the plugin
    (``--hwopt-json`` added): ``(exit status, the JSON report or {}, output tail)``.
    The folder gets ``test_child.py`` and ``report.json``; a time-out is exit status 124."""
    import json
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_child.py").write_text(test_source)
    report = folder / "report.json"
    cmd = [sys.executable, "-m", "pytest", "test_child.py", f"--hwopt-json={report}", "-q",
           "-p", "no:cacheprovider", "-p", "no:randomly", "-W", "default", *args]
    if not plugin_entry_point():
        cmd[3:3] = ["-p", "pytest_hwopt.plugin"]
    try:
        proc = subprocess.run(cmd, cwd=folder, env=subprocess_env(), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        return 124, {}, text[-3000:]
    data: dict[str, Any] = {}
    if report.exists():
        data = json.loads(report.read_text())
    return proc.returncode, data, (proc.stdout + proc.stderr)[-3000:]


# -- verdicts -------------------------------------------------------------------


def timers_verdict(unsynced_ms: float, synced_ms: float, events_ms: float,
                   tolerance: float = 0.10, launch_fraction: float = 0.2) -> dict[str, Any]:
    """Do synchronised host timing and CUDA events agree (within ``tolerance``, a fraction of
    the events' time), and is unsynchronised host timing at most ``launch_fraction`` of it?"""
    gap = abs(synced_ms - events_ms) / events_ms
    return {"synced_vs_events": gap, "agree": gap <= tolerance,
            "unsynced_over_events": unsynced_ms / events_ms,
            "unsynced_small": unsynced_ms <= launch_fraction * events_ms}


def stream_cases(device_count: int) -> list[tuple[str, int, bool]]:
    """``(label, CUDA ordinal, on a dedicated stream)`` of the timer comparisons: cuda:0 on
    its default stream and on a dedicated one, and cuda:1 where there is one."""
    cases = [("cuda:0, default stream", 0, False), ("cuda:0, dedicated stream", 0, True)]
    if device_count > 1:
        cases.append(("cuda:1, default stream", 1, False))
    return cases


def cold_plan_verdict(cold_calls_per_sample: int, warm_calls_per_sample: int) -> tuple[bool, str]:
    """A cold cache times one call per flushed sample (a warm one may batch several)."""
    return (cold_calls_per_sample == 1,
            f"cold: {cold_calls_per_sample} call(s) per sample, warm: "
            f"{warm_calls_per_sample}")


def default_stream_warnings(messages: list[str]) -> list[str]:
    """TensorRT's warnings about enqueueing on the default stream, among ``messages``."""
    return [m for m in messages if "default stream" in m.lower()]


def outputs_verdict(max_abs: float, max_ref: float, atol: float, rtol: float
                    ) -> tuple[bool, str]:
    """Outputs match when the largest difference is within ``atol + rtol * max |reference|``."""
    bound = atol + rtol * max_ref
    return max_abs <= bound, f"max |diff| {max_abs:.3g} (allowed {bound:.3g})"


def provider_verdict(providers: list[str], wanted: str) -> tuple[bool, str]:
    """The session runs on ``wanted`` first (no silent fallback)."""
    return bool(providers) and providers[0] == wanted, f"session providers: {providers}"


def nvml_match_verdict(facts: Mapping[str, Any], torch_uuid: str | None) -> tuple[bool, str]:
    """NVML found the GPU by UUID or PCI bus id, and (where torch knows it) the UUID is
    torch's device's."""
    how = facts.get("matched_by")
    uuid = str(facts.get("uuid") or "")
    same = not torch_uuid or uuid.removeprefix("GPU-").removeprefix("MIG-") == torch_uuid
    return (how in ("uuid", "pci_bus_id") and same,
            f"matched by {how}; NVML uuid {uuid or '?'}, torch uuid {torch_uuid or '?'}")


def power_verdict(idle_w: float | None, mean_w: float | None, limit_w: float | None
                  ) -> tuple[bool, str]:
    """The mean power of a busy window lies between the idle power and the power limit
    (5% over the limit allowed: the limit is enforced on a moving average)."""
    detail = f"idle {idle_w} W, busy mean {mean_w} W, limit {limit_w} W"
    if idle_w is None or mean_w is None or limit_w is None:
        return False, detail
    return idle_w < mean_w <= 1.05 * limit_w, detail


def child_checks(report: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """``(name, held, detail)`` per check of a child session's ``--hwopt-json`` report."""
    out = []
    for check in report.get("checks", []):
        name = f"{check.get('kind')} of {check.get('variant')}"
        status = str(check.get("status"))
        out.append((name, status in ("passed", "reported"),
                    f"{status}: {check.get('message') or check.get('measured')}"))
    return out


def budget_skip_reason(left_s: float | None, min_s: float) -> str | None:
    """Why a section needing about ``min_s`` seconds must not start with ``left_s`` seconds of
    the check's budget left (None: it may, or there is no budget)."""
    if left_s is None or left_s >= min_s:
        return None
    return f"time budget: {left_s:.0f} s left, needs ~{min_s:.0f} s"


def overall_status(report: Mapping[str, Any]) -> str:
    """``ok``, the skipped status as it is, or how many checks failed and sections raised."""
    if str(report.get("status", "")).startswith("skipped"):
        return str(report["status"])
    failed = [c for c in report.get("checks", []) if not c["ok"]]
    errors = [n for n, s in report.get("sections", {}).items() if s.get("status") == "error"]
    if not failed and not errors:
        return "ok"
    return f"failed: {len(failed)} check(s) failed, {len(errors)} section(s) raised"


# -- one section ------------------------------------------------------------------


class ChecksFailed(AssertionError):
    """Raised after a section's test body when some of its checks did not hold."""

    def __init__(self, section: str, failed: list[dict[str, Any]]) -> None:
        lines = [f"{len(failed)} check(s) of section {section!r} failed:"]
        lines += [f"  {c['check']}" + (f": {c['detail']}" if c["detail"] else "")
                  for c in failed]
        super().__init__("\n".join(lines))


class Section:
    """What one CUDA test measured and checked.

    Call it with figures (``section(op="...", cold_us=12.5, summary="...")``); ``check``
    records a named check without stopping the test; ``fact`` adds to the summary's
    top-level ``facts`` (``gpu``, ``driver``). The outcome fields are set from the
    test's reports (see :meth:`entry`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: dict[str, Any] = {}
        self.checks: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}
        self.status = "ok"
        self.reason = ""
        self.error = ""
        self.traceback = ""
        self.seconds = 0.0

    def __call__(self, **figures: Any) -> None:
        self.figures.update(figures)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"section": self.name, "check": name, "ok": bool(ok),
                            "detail": detail})
        return bool(ok)

    def fact(self, **facts: Any) -> None:
        self.facts.update(facts)

    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["ok"]]

    def skipped(self, reason: str) -> None:
        self.status, self.reason = "skipped", reason

    def raised(self, error: str, traceback: str) -> None:
        """The test raised something other than :class:`ChecksFailed`."""
        if self.status == "error":
            return
        self.status, self.error, self.traceback = "error", error, traceback
        self.check(RAISED, False, error)

    def entry(self) -> dict[str, Any]:
        """The section's value under ``sections`` in the summary."""
        if self.status == "skipped":
            return {"status": "skipped", "reason": self.reason}
        out: dict[str, Any] = {"status": self.status}
        if self.status == "error":
            out.update(error=self.error, traceback=self.traceback)
            if self.figures:
                out["result"] = dict(self.figures)
        else:
            out["result"] = dict(self.figures)
        out["seconds"] = round(self.seconds, 3)
        return out

    def payload(self) -> dict[str, Any]:
        """All of it, JSON-safe, to travel from a pytest-xdist worker to the controller."""
        return {"name": self.name, "entry": clean(self.entry()),
                "checks": clean(self.checks), "facts": clean(self.facts)}


# -- the summary ------------------------------------------------------------------


class Summary:
    """The check's whole report, built from sections' payloads as they finish.

    ``torch_facts`` is ``(torch or None, why CUDA is not usable or None)`` as
    :func:`cuda_or_reason` returns it.
    """

    def __init__(self, torch_facts: tuple[ModuleType | None, str | None],
                 budget_s: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        torch, why_not = torch_facts
        self.report: dict[str, Any] = {
            "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "budget_s": budget_s, "facts": host_facts(), "checks": [], "sections": {}}
        if torch is not None:
            self.report["facts"]["torch"] = torch.__version__
            self.report["facts"]["cuda"] = torch.version.cuda
        if why_not is not None:
            self.report.update(status=SKIPPED, reason=why_not)

    def add(self, payload: Mapping[str, Any]) -> None:
        self.report["sections"][payload["name"]] = payload["entry"]
        self.report["checks"].extend(payload["checks"])
        self.report["facts"].update(payload["facts"])

    def finish(self) -> None:
        self.report["status"] = overall_status(self.report)

    def write(self, outdir: Path) -> None:
        self.report["seconds"] = self._clock() - self._start
        write_report(outdir, self.report)


def clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings, unknown objects their repr."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _cell(value: Any) -> str:
    return str(value).replace("|", "/").replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    """A short summary: status, device, checks, sections and their headline numbers."""
    lines = ["# pytest-hwopt GPU check", "",
             f"**Status:** {report.get('status')}  ",
             f"**When:** {report.get('started', '?')}, {report.get('seconds', 0):.0f} s  "]
    facts = report.get("facts", {})
    for key in ("gpu", "torch", "cuda", "driver", "reason"):
        if facts.get(key) is not None or report.get(key) is not None:
            lines.append(f"**{key}:** {facts.get(key, report.get(key))}  ")
    checks = report.get("checks", [])
    if checks:
        lines += ["", "## Checks", "", "| | section | check | detail |", "|---|---|---|---|"]
        lines += [f"| {'PASS' if c['ok'] else 'FAIL'} | {c['section']} | {c['check']} "
                  f"| {_cell(c.get('detail', ''))} |" for c in checks]
    sections = report.get("sections", {})
    if sections:
        lines += ["", "## Sections", "", "| section | status | s | summary |", "|---|---|---|---|"]
        for name, s in sections.items():
            note = (s.get("result") or {}).get("summary", "") if s.get("status") == "ok" \
                else s.get("error", s.get("reason", ""))
            lines.append(f"| {name} | {s.get('status')} | {s.get('seconds', '')} | "
                         f"{_cell(note)} |")
    return "\n".join(lines) + "\n"


def write_report(outdir: Path, report: Mapping[str, Any]) -> None:
    """``outdir/gpu-check.json`` and ``outdir/gpu-check.md``, each replaced atomically."""
    data = clean(report)
    write_json_atomic(outdir / JSON_NAME, data)
    write_text_atomic(outdir / MARKDOWN_NAME, render_markdown(data))
