"""The package's layers: core <- hardware <- backends; core <- results; the glue on top.

Every import counts here, lazy ones inside functions and ``TYPE_CHECKING`` blocks included:
an upward import is a design error even when it is deferred.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_hwopt

PACKAGE = Path(pytest_hwopt.__file__).parent

#: layer -> the layers it may import from (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "hardware": {"core"},
    "results": {"core"},
    "backends": {"core", "hardware"},
    # the public face
    "markers": {"core"},
    "hookspecs": {"core", "hardware", "backends", "results"},
    "api": {"core", "hardware"},
    "__main__": {"core", "results"},
    "__init__": {"core", "hardware", "backends", "results", "api", "markers"},
    # the pytest glue uses everything
    "_plugin": {"core", "hardware", "backends", "results", "api", "markers", "hookspecs",
                "__init__"},
    "plugin": {"core", "_plugin", "markers", "hookspecs"},
}
FRAMEWORKS = {"pytest", "_pytest", "torch", "onnx", "onnxruntime", "openvino", "tensorrt",
              "transformers"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute names of the modules (and third-party roots) ``path`` imports."""
    return _imports_in(path.read_text(), _name(path), path.name == "__init__.py",
                       top_level_only=top_level_only)


def _imports_in(text: str, module: str, is_package: bool, *,
                top_level_only: bool = False) -> set[str]:
    tree = ast.parse(text)
    package = module if is_package else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from pytest_hwopt.core import stats" imports the module pytest_hwopt.core.stats
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _internal(names: set[str]) -> set[str]:
    known = {_name(p) for p in _modules()}
    return {n for n in names if n in known and n != "pytest_hwopt"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_no_upward_import(path: Path) -> None:
    module = _name(path)
    layer = _layer(module)
    allowed = ALLOWED[layer] | {layer}
    wrong = sorted(n for n in _internal(_imports(path)) if _layer(n) not in allowed)
    assert not wrong, f"{module} ({layer}) imports {wrong}; {layer} may import {sorted(allowed)}"


@pytest.mark.parametrize("path", [p for p in _modules() if _layer(_name(p)) == "core"],
                         ids=lambda p: _name(p))
def test_core_is_pure(path: Path) -> None:
    roots = {n.split(".")[0] for n in _imports(path)}
    assert not roots & FRAMEWORKS, f"{_name(path)} imports {sorted(roots & FRAMEWORKS)}"


def test_no_import_cycle_between_modules() -> None:
    """Module-level imports form no cycle (lazy imports may point down or sideways only, which
    the layer test checks)."""
    graph = {_name(p): _internal(_imports(p, top_level_only=True)) - {_name(p)}
             for p in _modules()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_lazy_and_relative_upward_imports() -> None:
    """The checker itself: imports deferred into a function or written relatively count."""
    text = ("def f():\n    from pytest_hwopt.hardware import devices\n"
            "def g():\n    from ..results import terminal\n")
    found = _internal(_imports_in(text, "pytest_hwopt.core.stats", False))
    assert found == {"pytest_hwopt.hardware", "pytest_hwopt.hardware.devices",
                     "pytest_hwopt.results", "pytest_hwopt.results.terminal"} - {"pytest_hwopt"}
    assert {_layer(n) for n in found} == {"hardware", "results"}
