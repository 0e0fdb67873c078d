"""Baselines: saved runs, and how this run compares with one.

Pure: no pytest, no torch. A run's JSON document (the one ``--hwopt-json`` writes,
raw samples included) is saved under ``.hwopt/<machine-key>/NNNN_NAME.json``;
:func:`compare_documents` compares two such documents variant by variant:

* ratio of medians of the per-call samples, current / baseline (above 1: slower);
* a two-sided Mann-Whitney U test on the samples; a difference counts when
  ``p < alpha`` (0.01) *and* the ratio is beyond the allowed regression
  (``--hwopt-max-regression``, default 10%): ``ratio > 1 + t`` is a regression,
  ``ratio < 1 / (1 + t)`` an improvement (the same factor the other way round);
* variants only in the current run are ``new``, only in the baseline ``missing``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pytest_hwopt.core import stats
from pytest_hwopt.core.settings import DEFAULT_MAX_REGRESSION
from pytest_hwopt.results.jsonio import dumps
from pytest_hwopt.results.schema import BaselineRow, BaselineSection, Verdict
from pytest_hwopt.results.terminal import table

ALPHA = 0.01
SAVE_DIR = ".hwopt"

REGRESSION: Final = "regression"
IMPROVEMENT: Final = "improvement"
UNCHANGED: Final = "unchanged"
NEW: Final = "new"
MISSING: Final = "missing"

# environment entries that change timings: (label, path in the environment)
ENVIRONMENT_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("device", ("device",)),
    ("gpu", ("gpu",)),
    ("cpu", ("cpu",)),
    ("python", ("python",)),
    ("torch", ("versions", "torch")),
    ("onnxruntime", ("versions", "onnxruntime")),
    ("onnxruntime-gpu", ("versions", "onnxruntime-gpu")),
    ("openvino", ("versions", "openvino")),
    ("tensorrt", ("versions", "tensorrt")),
    ("threads", ("threads",)),
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SAVED_PATTERN = re.compile(r"^(\d{4})_(.+)\.json$")


class BaselineError(ValueError):
    """A baseline that cannot be used; the message names the file."""


# ---- documents ---------------------------------------------------------------------------

def load_document(path: str | Path) -> dict[str, Any]:
    """Read and validate a pytest-hwopt results document."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: not a pytest-hwopt results file: not JSON ({exc})"
                            ) from None
    validate_document(data, str(path))
    return data


def validate_document(data: object, name: str) -> None:
    """Raise :class:`BaselineError` unless ``data`` looks like a pytest-hwopt document."""
    if not isinstance(data, dict) or "results" not in data or "version" not in data:
        hint = " (a pytest-benchmark file?)" if isinstance(data, dict) and "benchmarks" in data \
            else ""
        raise BaselineError(f"{name}: not a pytest-hwopt results file: no 'results' and "
                            f"'version' keys{hint}")
    results = data["results"]
    if not isinstance(results, list):
        raise BaselineError(f"{name}: 'results' must be a list")
    for n, row in enumerate(results):
        if not isinstance(row, dict) or not isinstance(row.get("test"), str) \
                or not isinstance(row.get("variant"), str):
            raise BaselineError(f"{name}: results[{n}] has no 'test' and 'variant'")
        samples = row.get("samples")
        if not isinstance(samples, list) or not samples or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
                for s in samples):
            raise BaselineError(f"{name}: results[{n}] ({row['test']} {row['variant']}) has "
                                "no raw 'samples' (a list of numbers)")
    env = data.get("environment", {})
    if not isinstance(env, dict):
        raise BaselineError(f"{name}: 'environment' must be an object")


def samples_by_test(document: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    """test -> variant -> per-call samples (ms); a repeated test keeps its last run."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in document.get("results", []):
        out.setdefault(row["test"], {})[row["variant"]] = [float(s) for s in row["samples"]]
    return out


# ---- comparing ---------------------------------------------------------------------------

def parse_threshold(value: str | float | None) -> float:
    """``"10%"`` or ``0.1`` -> 0.1; None or empty -> the default (10%)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_MAX_REGRESSION
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{text}: expected a percentage like 10% or a fraction like 0.1"
                         ) from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{text}: expected a positive percentage like 10% or fraction like 0.1")
    if not text.endswith("%") and number >= 1:
        raise ValueError(f"{text}: ambiguous; write a percentage like {text}% or a fraction "
                         "below 1 like 0.1")
    return number


@dataclass(frozen=True)
class Row:
    """One variant of one test, compared with the baseline."""

    test: str
    variant: str
    baseline_ms: float | None
    current_ms: float | None
    ratio: float | None  # current / baseline median time
    p: float | None
    verdict: Verdict

    def to_dict(self) -> BaselineRow:
        return {"test": self.test, "variant": self.variant, "baseline_ms": self.baseline_ms,
                "current_ms": self.current_ms, "ratio": self.ratio, "p": self.p,
                "verdict": self.verdict}

    def describe(self, threshold: float) -> str:
        """One line, as a check message."""
        if self.verdict == NEW:
            return f"{self.variant}: new, no baseline"
        if self.verdict == MISSING:
            return f"{self.variant}: in the baseline, not measured now"
        assert self.ratio is not None and self.p is not None
        change = (f"{self.ratio:.2f}x slower" if self.ratio >= 1
                  else f"{1 / self.ratio:.2f}x faster")
        head = (f"median {_ms(self.baseline_ms)} -> {_ms(self.current_ms)}, {change} "
                f"(Mann-Whitney p={self.p:.2g})")
        if self.verdict == REGRESSION:
            return (f"regression of {self.variant} vs baseline: {head} > "
                    f"{1 + threshold:.2f}x allowed")
        if self.verdict == IMPROVEMENT:
            return f"improved: {self.variant} vs baseline: {head}"
        return f"{self.variant} unchanged vs baseline: {head}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g} ms"


def compare_samples(test: str, variant: str, baseline: Sequence[float],
                    current: Sequence[float], max_regression: float = DEFAULT_MAX_REGRESSION,
                    alpha: float = ALPHA) -> Row:
    """Compare the samples of one variant; see the module docstring for the rule."""
    base, cur = stats.median(baseline), stats.median(current)
    ratio = cur / base if base > 0 else math.inf
    p = stats.mann_whitney_p(current, baseline)
    verdict: Verdict = UNCHANGED
    if p < alpha and ratio > 1 + max_regression:
        verdict = REGRESSION
    elif p < alpha and ratio < 1 / (1 + max_regression):
        verdict = IMPROVEMENT
    return Row(test, variant, base, cur, ratio, p, verdict)


def compare_documents(baseline: Mapping[str, Any], current: Mapping[str, Any],
                      max_regression: float = DEFAULT_MAX_REGRESSION, alpha: float = ALPHA
                      ) -> list[Row]:
    """Every variant of both runs: compared, new or missing; current order, missing last."""
    base = samples_by_test(baseline)
    cur = samples_by_test(current)
    rows: list[Row] = []
    for test, variants in cur.items():
        for variant, samples in variants.items():
            old = base.get(test, {}).get(variant)
            if old is None:
                rows.append(Row(test, variant, None, stats.median(samples), None, None, NEW))
            else:
                rows.append(compare_samples(test, variant, old, samples, max_regression, alpha))
    for test, variants in base.items():
        for variant, samples in variants.items():
            if variant not in cur.get(test, {}):
                rows.append(Row(test, variant, stats.median(samples), None, None, None, MISSING))
    return rows


def counts(rows: Iterable[Row]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row.verdict] = out.get(row.verdict, 0) + 1
    return out


TABLE_HEADER = ("test", "variant", "baseline", "current", "ratio", "p", "verdict")


def section(path: str | Path, max_regression: float, rows: Sequence[Row]) -> BaselineSection:
    """The document's ``baseline`` entry: the file compared with, the rule and every row."""
    return {"path": str(path), "max_regression": max_regression, "alpha": ALPHA,
            "counts": counts(rows), "rows": [r.to_dict() for r in rows]}


def table_rows(rows: Iterable[Row]) -> list[list[str]]:
    """Cells for :func:`.terminal.table` under :data:`TABLE_HEADER`."""
    out: list[list[str]] = []
    for r in rows:
        out.append([r.test, r.variant, _ms(r.baseline_ms), _ms(r.current_ms),
                    "-" if r.ratio is None else f"{r.ratio:.3f}x",
                    "-" if r.p is None else f"{r.p:.2g}", r.verdict])
    return out


def format_table(rows: Sequence[Row]) -> list[str]:
    return table(table_rows(rows), TABLE_HEADER)


def summary_line(rows: Sequence[Row], threshold: float) -> str:
    c = counts(rows)
    parts = [f"{c[v]} {v}" for v in (REGRESSION, IMPROVEMENT, UNCHANGED, NEW, MISSING) if c.get(v)]
    return (f"{', '.join(parts) or 'nothing compared'} (threshold {threshold:.0%}, "
            f"p < {ALPHA})")


# ---- environment -------------------------------------------------------------------------

def _lookup(env: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, object]:
    """``(known, value)``: whether ``env`` says anything about the entry, and its value.

    An entry is known when present; a library version is also known (as not installed)
    when the environment lists versions, and the GPU (as none) when it names the device.
    """
    value: object = env
    for part in path:
        if not isinstance(value, Mapping):
            return False, None
        value = value.get(part)
    if value is not None:
        return True, value
    if path[0] == "versions":
        return isinstance(env.get("versions"), Mapping), None
    if path == ("gpu",):
        return env.get("device") is not None, None
    return False, None


def environment_mismatch(baseline_env: Mapping[str, Any], current_env: Mapping[str, Any]
                         ) -> list[str]:
    """What differs between two environments that changes timings, one line each.

    Entries only one side records (an older file, a run that measured nothing) are skipped.
    """
    out = []
    for label, path in ENVIRONMENT_KEYS:
        (known_a, a), (known_b, b) = _lookup(baseline_env, path), _lookup(current_env, path)
        if not (known_a and known_b) or a == b:
            continue
        out.append(f"{label}: baseline {_shown(a)}, now {_shown(b)}")
    return out


def _shown(value: object) -> str:
    return "none" if value is None else str(value)


# ---- saved runs --------------------------------------------------------------------------

def sanitize(text: str) -> str:
    """A file-name-safe form: letters, digits, ``.``, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "unknown"


def machine_key(hostname: str, device_name: str) -> str:
    """``<host>-<gpu or cpu name>``, sanitized and at most 100 characters."""
    return f"{sanitize(hostname or 'host')}-{sanitize(device_name or 'device')}"[:100]


def machine_key_of(env: Mapping[str, Any]) -> str:
    """The machine key of a saved document's environment."""
    return machine_key(str(env.get("hostname", "")),
                       str(env.get("gpu") or env.get("device_name") or env.get("cpu") or ""))


def is_path_like(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith(".json")


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{name!r}: a run name uses letters, digits, '.', '_' and '-' "
                         "(or give a path ending in .json)")


def saved_runs(directory: str | Path) -> list[tuple[int, str, Path]]:
    """``(number, name, path)`` of the runs saved in ``directory``, by number."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    out = []
    for path in directory.iterdir():
        m = SAVED_PATTERN.match(path.name)
        if m and path.is_file():
            out.append((int(m.group(1)), m.group(2), path))
    return sorted(out)


def find_saved(directory: str | Path, name: str) -> Path | None:
    """The latest run saved as ``NAME``, or the run numbered ``name`` (4 digits)."""
    runs = saved_runs(directory)
    if re.fullmatch(r"\d{4}", name):
        found = [p for n, _, p in runs if n == int(name)]
    else:
        found = [p for _, run, p in runs if run == name]
    return found[-1] if found else None


def next_path(directory: str | Path, name: str) -> Path:
    """``directory/NNNN_name.json`` with NNNN one above the highest saved number."""
    runs = saved_runs(directory)
    number = runs[-1][0] + 1 if runs else 1
    return Path(directory) / f"{number:04d}_{name}.json"


def save_numbered(directory: str | Path, name: str, document: Mapping[str, Any]) -> Path:
    """Write ``document`` as the next numbered run; never replaces an existing file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = dumps(document)
    for _ in range(1000):
        target = next_path(directory, name)
        try:
            with open(target, "x", encoding="utf-8") as fh:
                fh.write(text)
        except FileExistsError:  # another run took this number meanwhile
            continue
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
        return target
    raise OSError(f"{directory}: could not find a free run number")

