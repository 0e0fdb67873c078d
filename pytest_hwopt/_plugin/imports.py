"""Load the plugin's own modules with Python's standard loader, not pytest's assertion rewriter.

pytest marks every top-level package of a distribution that declares a ``pytest11`` entry
point for assertion rewriting, so each module of ``pytest_hwopt`` would be parsed, rewritten
and compiled when imported. The plugin's modules hold no test assertions, and where
``PYTHONDONTWRITEBYTECODE`` is set (as in many CI containers) the rewritten byte code is never
cached: every pytest process pays for it again (about 0.25 s for the modules one verdict
imports, measured on a 2-vCPU AMD EPYC with ``python -X importtime``). A finder placed ahead of
pytest's hook answers for this package's submodules with the standard path finder, so they
load from ordinary byte code; test modules and conftests are still rewritten.
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

PACKAGE = "pytest_hwopt"


class PlainFinder:
    """A ``sys.meta_path`` finder for ``pytest_hwopt.*`` that defers to ``PathFinder``."""

    @staticmethod
    def find_spec(fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if not fullname.startswith(PACKAGE + "."):
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, path, target)


def load_plainly() -> None:
    """Put :class:`PlainFinder` first on ``sys.meta_path`` (once; idempotent)."""
    if not any(isinstance(finder, PlainFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, PlainFinder())
