"""What the benchmark runs on: machine facts, the interpreter's packages, the plugin copy.

The checks here stop the benchmark with a ``SystemExit`` that says what is
missing, before any run starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from benchmarks.verdicts.records import MachineInfo, PluginCode

PROBE_TIMEOUT_S: Final = 60.0
DISTRIBUTIONS: Final = ("pytest", "pytest-hwopt", "pytest-benchmark")

# run by the interpreter under test: versions, pytest11 entry points, where pytest_hwopt lives
_PROBE: Final = r'''
import json, sys
from importlib import metadata
out = {}
for dist in ("pytest", "pytest-hwopt", "pytest-benchmark"):
    try:
        out[dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
        pass
out["_entry_points"] = sorted({ep.name for ep in metadata.entry_points(group="pytest11")})
try:
    import pytest_hwopt.plugin, os
    out["_package"] = os.path.dirname(os.path.abspath(pytest_hwopt.__file__))
except Exception as exc:
    out["_import_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
'''


def machine() -> MachineInfo:
    """Usable cores (affinity), CPU model, platform, Python version and load at start."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        load: list[float] | None = list(os.getloadavg())
    except OSError:
        load = None
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu_model": model,
            "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_at_start": load}


@dataclass
class Interpreter:
    """What an interpreter has installed.

    ``versions`` maps the distributions of :data:`DISTRIBUTIONS` it has to their
    versions; ``entry_points`` are its ``pytest11`` plugin names; ``package`` is
    the directory ``pytest_hwopt`` imports from, or ``None`` with
    ``import_error`` saying why.
    """

    versions: dict[str, str] = field(default_factory=dict)
    entry_points: list[str] = field(default_factory=list)
    package: str | None = None
    import_error: str | None = None


def probe(python: str, pythonpath: str | None = None) -> Interpreter:
    """Ask ``python`` (with ``PYTHONPATH`` set to ``pythonpath`` only) what it has.

    Raises ``SystemExit`` if the interpreter cannot be run or answers nonsense.
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    try:
        res = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_S, env=env, cwd=tempfile.gettempdir())
        found = json.loads(res.stdout)
        return Interpreter(
            versions={d: str(found[d]) for d in DISTRIBUTIONS if d in found},
            entry_points=[str(e) for e in found.get("_entry_points", [])],
            package=found.get("_package"), import_error=found.get("_import_error"))
    except (OSError, ValueError, AttributeError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(
            f"benchmarks.verdicts: cannot query the interpreter {python!r}: {exc}") from None


def check_installed(python: str, tools: Sequence[str]) -> Interpreter:
    """What ``python`` has, or ``SystemExit`` naming what the chosen ``tools`` miss."""
    found = probe(python)
    problems = []
    if "pytest" not in found.versions:
        problems.append("pytest is not installed")
    if "hwopt" in tools and ("pytest-hwopt" not in found.versions
                             or "hwopt" not in found.entry_points):
        problems.append("pytest-hwopt is not installed (no pytest11 entry point 'hwopt'); "
                        "install it with `pip install -e .` from the repository root")
    elif "hwopt" in tools and found.package is None:
        problems.append(f"pytest_hwopt does not import: {found.import_error}")
    if "pytest-benchmark" in tools and "pytest-benchmark" not in found.versions:
        problems.append("pytest-benchmark is not installed (`pip install pytest-benchmark`), "
                        "or leave it out with --tools hwopt")
    if problems:
        raise SystemExit(f"benchmarks.verdicts: with interpreter {python}:\n  "
                         + "\n  ".join(problems)
                         + "\n(use --python to name another interpreter, e.g. .venv/bin/python)")
    return found


def tree_sha256(root: Path) -> str:
    """SHA-256 (hex) over the relative paths and contents of the ``.py`` files under ``root``."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def live_plugin(package: str | None) -> PluginCode:
    """The record for runs that import pytest_hwopt from where it is installed."""
    return {"mode": "live", "source": package,
            "sha256": tree_sha256(Path(package)) if package else None}


def snapshot_plugin(python: str, package: Path, dest: Path, tries: int = 5) -> PluginCode:
    """Copy the pytest_hwopt package under ``dest`` and check that the copy imports.

    The copy is byte-compiled with ``python -m compileall``, as ``pip install``
    does, so runs (which set ``PYTHONDONTWRITEBYTECODE``) import it as users import
    an installed package rather than compiling it in every process. Retried
    ``tries`` times, 5 s apart: someone may be in the middle of editing the
    package. Raises ``SystemExit`` if no copy imports.
    """
    last = ""
    for attempt in range(tries):
        target = dest / "pytest_hwopt"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        subprocess.run([python, "-m", "compileall", "-q", str(target)], check=False,
                       stdout=subprocess.DEVNULL)
        found = probe(python, str(dest))
        where = found.package
        if where and Path(where).resolve() == target.resolve():
            return {"mode": "snapshot of", "source": str(package), "copy": str(target),
                    "sha256": tree_sha256(target), "attempts": attempt + 1}
        last = found.import_error or f"imported from {where}, not the copy"
        time.sleep(5)
    raise SystemExit(f"benchmarks.verdicts: the copy of {package} does not import: {last} "
                     "(pass --live-plugin to use the installed package as it is)")
