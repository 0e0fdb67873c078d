"""Budgets per machine, kept in a TOML file instead of (or on top of) the markers.

Pure: no pytest, no torch. The plugin reads ``--hwopt-budgets=PATH`` (or the ini
key ``hwopt_budgets``), else the ``[tool.hwopt]`` table of the rootdir's
``pyproject.toml``, and applies the entries in the ``pytest_hwopt_budgets`` hook.

A budgets file is a list of ``[[budget]]`` tables::

    [[budget]]
    test = "suites/test_kv_cache.py::*"      # pattern on the node id (or a list): * and ?
    device = "cpu"                            # optional: cpu/cuda, cuda:0, a GPU name: H100,
                                              # or a CPU feature: cpu+avx512_vnni
    speedup = { min = 2.5, vs = "recompute-128", of = "cached-128" }   # any marker kind
    latency = { p95_ms = 20 }                 # same arguments as the marker

    [[budget]]
    test = "suites/test_kv_cache.py::test_decode"
    device = "H100"
    latency = { p95_ms = 2, of = "cached-128" }

In ``pyproject.toml`` the same tables are spelled ``[[tool.hwopt.budget]]``.

Rules:

* ``test`` is a pattern on the node id (``path/to/test_file.py::test_name[param]``,
  paths relative to the rootdir): ``*`` matches any text and ``?`` one character;
  everything else is literal, brackets included (``test_op[shape=[1, 3]]``). A pattern
  also matches the parametrized instances of the node id it names, so
  ``"suites/test_a.py::test_b"`` covers ``"suites/test_a.py::test_b[cpu]"``; the plain
  node id is pytest's (parent and original name), never cut out of the id's text.
* ``device`` (optional) picks the machines an entry applies to, like the keys of a
  per-device marker value (:mod:`.devicekeys`): the device kind (``cpu``, ``cuda``),
  ``cuda:N``, a substring of the GPU / CPU name (``H100``, ``Xeon``), or a CPU feature
  key (``cpu+avx512_vnni``: CPUs with that flag, ``cpu-avx512_vnni``: without,
  ``cpu+avx2-avx512_vnni``: both conditions). Without it the entry applies everywhere.
* Every other key is a budget marker kind (``speedup``, ``latency``,
  ``throughput``, ``memory``, ``accuracy``, ``cold_start``, ``energy``,
  ``roofline``) whose value is a table of the marker's keyword arguments (or a
  list of such tables); values are validated by the same rules as the markers,
  per-device maps included (``min = { cpu = 1.5, H100 = 3.0 }``).
* A budget from the file *replaces* the test's budgets of the same kind with the
  same ``of`` and ``vs``; otherwise it is *added* (only to tests that measure,
  i.e. use ``hwopt_bench`` or pytest-benchmark's ``benchmark``). When several
  entries give the same budget, the one for the most specific device wins
  (GPU/CPU name over ``cuda:N`` over a CPU feature key over ``cuda``/``cpu`` over no
  device; of two feature keys, the one with more conditions), and among equally
  specific ones the later entry in the file.

Errors name the file, the line and the key: ``budgets.toml:7: [[budget]] #2, key
'speedup': hwopt_speedup: missing required argument 'vs'``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pytest_hwopt.core.devicekeys import DeviceKeyError, check_key, key_rank
from pytest_hwopt.core.specs import BUDGET_KINDS, Spec, SpecError, parse_marker

ENTRY_KEYS = ("test", "device")
PYPROJECT_TABLE = ("tool", "hwopt", "budget")
FILE_TABLE = ("budget",)
_MENTIONS_TOOL_HWOPT = re.compile(r"""\btool["']?\s*\.\s*["']?hwopt\b""")


class BudgetFileError(ValueError):
    """A budgets file that cannot be read or holds an invalid entry; names file, line, key."""


@dataclass(frozen=True)
class BudgetEntry:
    """One ``[[budget]]`` table, validated."""

    patterns: tuple[str, ...]
    device: str | None
    specs: tuple[Spec, ...]
    source: str  # "path:line"

    def matches_test(self, nodeid: str, base: str | None = None) -> bool:
        """Whether a pattern matches ``nodeid`` or ``base`` (the node id without the
        parameters, from pytest's item)."""
        return any(_match(nodeid, p, base) for p in self.patterns)


def _match(nodeid: str, pattern: str, base: str | None = None) -> bool:
    """``pattern`` matches the node id, or ``base``, the node id without its parameters."""
    regex = _pattern(pattern)
    return any(name is not None and (name == pattern or regex.fullmatch(name) is not None)
               for name in (nodeid, base))


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    """``*`` any text, ``?`` one character; everything else literal, brackets included
    (test ids hold them: ``test_op[shape=[1, 3]]``)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern), re.DOTALL)


def _toml() -> ModuleType:
    """``tomllib``, or ``tomli`` before Python 3.11."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef, import-not-found, unused-ignore]
        except ModuleNotFoundError:
            raise BudgetFileError("reading a budgets file needs Python 3.11+ (tomllib) or the "
                                  "'tomli' package: pip install tomli") from None
    return tomllib


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BudgetFileError(f"{path}: budgets file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BudgetFileError(f"{path}: cannot read budgets file: {exc}") from None


def _parse_toml(text: str, name: str) -> dict[str, object]:
    tomllib = _toml()
    try:
        data: dict[str, object] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BudgetFileError(f"{name}: invalid TOML: {exc}") from None
    return data


def load(path: str | Path) -> list[BudgetEntry]:
    """The entries of a budgets file (top-level ``[[budget]]`` tables)."""
    text = _read(path)
    return parse(text, str(path))


def load_pyproject(path: str | Path) -> list[BudgetEntry]:
    """The ``[[tool.hwopt.budget]]`` entries of a ``pyproject.toml``; none without the table."""
    text = _read(path)
    if not _MENTIONS_TOOL_HWOPT.search(text):  # most projects have none: no TOML parser needed
        return []
    return parse(text, str(path), table=PYPROJECT_TABLE)


def parse(text: str, name: str, table: Sequence[str] = FILE_TABLE) -> list[BudgetEntry]:
    """Validate the entries under ``table`` of a TOML text; ``name`` is used in errors."""
    data = _parse_toml(text, name)
    lines = text.splitlines()
    parent: dict[str, object] = data
    for depth, part in enumerate(table[:-1]):
        child = parent.get(part)
        if child is None:
            return []
        if not isinstance(child, dict):
            where = ".".join(table[:depth + 1])
            raise BudgetFileError(f"{name}:{_key_line(lines, where) or 1}: {where!r} must be a "
                                  "table")
        parent = child
    scope = ".".join(table[:-1])
    allowed = {table[-1]}
    for key in parent:
        if key not in allowed:
            full = f"{scope}.{key}" if scope else key
            line = _header_line(lines, (*table[:-1], key)) or _key_line(lines, key) or 1
            raise BudgetFileError(
                f"{name}:{line}: unknown key {full!r}; budgets go in "
                f"[[{'.'.join(table)}]] tables")
    raw = parent.get(table[-1], [])
    header = ".".join(table)
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        line = _key_line(lines, table[-1]) or 1
        raise BudgetFileError(f"{name}:{line}: {header!r} must be a list of [[{header}]] tables")
    spans = _entry_spans(lines, table, len(raw))
    return [_entry(item, n, name, lines, spans[n], header) for n, item in enumerate(raw)]


def _entry(item: object, n: int, name: str, lines: list[str], span: tuple[int, int],
           header: str) -> BudgetEntry:
    start, end = span
    label = f"[[{header}]] #{n + 1}"

    def fail(key: str | None, message: str) -> BudgetFileError:
        line = (_key_line(lines, key, start, end) if key else None) or start + 1
        where = f"{label}, key {key!r}" if key else label
        return BudgetFileError(f"{name}:{line}: {where}: {message}")

    if not isinstance(item, dict):
        raise fail(None, f"must be a table, got {item!r}")
    if "test" not in item:
        raise fail(None, "missing key 'test' (a pattern on the node id, "
                         "e.g. \"suites/test_x.py::*\")")
    patterns = item["test"]
    if isinstance(patterns, str):
        patterns = [patterns]
    if (not isinstance(patterns, list) or not patterns
            or not all(isinstance(p, str) and p for p in patterns)):
        raise fail("test", f"must be a node id pattern or a list of them, got {item['test']!r}")
    device = item.get("device")
    if device is not None and (not isinstance(device, str) or not device.strip()):
        raise fail("device", f"must be a device such as \"cpu\", \"cuda:0\", \"H100\" or "
                             f"\"cpu+avx512_vnni\", got {device!r}")
    if device is not None:
        try:
            check_key(device)
        except DeviceKeyError as exc:
            raise fail("device", str(exc)) from None
    specs: list[Spec] = []
    for key, value in item.items():
        if key in ENTRY_KEYS:
            continue
        if key not in BUDGET_KINDS:
            raise fail(key, f"unknown key; an entry takes test, device and budget kinds "
                            f"({', '.join(BUDGET_KINDS)})")
        tables = value if isinstance(value, list) else [value]
        if not tables:
            raise fail(key, "empty list of budgets")
        for args in tables:
            if not isinstance(args, dict):
                raise fail(key, f"must be a table of the marker's arguments like "
                                f"{{ p95_ms = 20 }}, got {args!r}")
            try:
                specs.append(parse_marker(key, (), args))
            except SpecError as exc:
                raise fail(key, str(exc)) from None
    if not specs:
        raise fail(None, f"no budget given; add a budget kind ({', '.join(BUDGET_KINDS)})")
    return BudgetEntry(tuple(patterns), device.strip() if device else None, tuple(specs),
                       f"{name}:{start + 1}")


# ---- locating lines: tomllib gives no positions, so scan the text ------------------------

def _dotted(parts: Sequence[str]) -> str:
    return r"\s*\.\s*".join(rf"""["']?{re.escape(p)}["']?""" for p in parts)


def _header_line(lines: list[str], parts: Sequence[str]) -> int | None:
    """1-based line of a ``[a.b]`` or ``[[a.b]]`` header."""
    pattern = re.compile(rf"^\s*\[\[?\s*{_dotted(parts)}\s*\]\]?\s*(#.*)?$")
    for i, line in enumerate(lines):
        if pattern.match(line):
            return i + 1
    return None


def _entry_spans(lines: list[str], table: Sequence[str], count: int) -> list[tuple[int, int]]:
    """0-based ``[start, end)`` line ranges of the ``count`` entries of an array of tables."""
    header = re.compile(rf"^\s*\[\[\s*{_dotted(table)}\s*\]\]\s*(#.*)?$")
    sub = re.compile(rf"^\s*\[\s*{_dotted(table)}\s*\.")
    any_header = re.compile(r"^\s*\[")
    starts = [i for i, line in enumerate(lines) if header.match(line)]
    if len(starts) != count:  # written inline (budget = [ {...} ]): point at the key
        line = (_key_line(lines, table[-1]) or 1) - 1
        return [(line, len(lines))] * count
    spans = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        for i in range(start + 1, end):
            if any_header.match(lines[i]) and not sub.match(lines[i]):
                end = i
                break
        spans.append((start, end))
    return spans


def _key_line(lines: list[str], key: str, start: int = 0, end: int | None = None
              ) -> int | None:
    """1-based line where ``key = ...``, ``key.x = ...`` or ``[....key]`` appears in a range."""
    k = rf"""["']?{re.escape(key)}["']?"""
    assign = re.compile(rf"^\s*{k}\s*[=.]")
    table = re.compile(rf"^\s*\[\[?[^\]]*\.\s*{k}\s*\]")
    for i in range(start, len(lines) if end is None else end):
        if assign.match(lines[i]) or table.match(lines[i]):
            return i + 1
    return None


# ---- applying entries --------------------------------------------------------------------

def device_rank(device: str | None, device_keys: Sequence[str]) -> tuple[int, int] | None:
    """How specifically ``device`` names this machine, lower is more specific: its
    :func:`.devicekeys.key_rank` against ``device_keys`` (most specific first, as
    :meth:`Device.budget_keys` gives them), ``(len(device_keys), 0)`` for no device, None
    when the entry is for another device."""
    if device is None:
        return len(device_keys), 0
    return key_rank(device, device_keys)


def select(entries: Sequence[BudgetEntry], nodeid: str, base: str | None = None
           ) -> list[BudgetEntry]:
    """The entries whose ``test`` pattern matches ``nodeid`` (or ``base``, the node id
    without its parameters, which covers every parametrized instance), in file order."""
    return [e for e in entries if e.matches_test(nodeid, base)]


def needs_device(entries: Sequence[BudgetEntry]) -> bool:
    return any(e.device is not None for e in entries)


def apply(specs: MutableSequence[Spec], entries: Sequence[BudgetEntry],
          device_keys: Sequence[str], *, add: bool = True) -> list[tuple[Spec, BudgetEntry]]:
    """Merge the budgets of ``entries`` (already selected for the test) into ``specs`` in place.

    A budget replaces the specs of the same kind, ``of`` and ``vs``, else it is appended
    when ``add``. Returns the ``(spec, entry)`` pairs that took effect.
    """
    ranked = []
    for order, entry in enumerate(entries):
        rank = device_rank(entry.device, device_keys)
        if rank is not None:
            ranked.append((rank, order, entry))
    # least specific first, so that the most specific entry is applied last and wins
    ranked.sort(key=lambda t: (t[0], -t[1]), reverse=True)
    applied: dict[tuple[str, str | None, str | None], tuple[Spec, BudgetEntry]] = {}
    for _, _, entry in ranked:
        for spec in entry.specs:
            key = (spec.kind, spec.of, spec.vs)
            same = [i for i, s in enumerate(specs) if (s.kind, s.of, s.vs) == key]
            if same:
                specs[same[0]] = spec
                for i in reversed(same[1:]):
                    del specs[i]
            elif add:
                specs.append(spec)
            else:
                continue
            applied[key] = (spec, entry)
    return list(applied.values())
