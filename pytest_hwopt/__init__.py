"""pytest-hwopt: inference optimisation claims as pytest assertions.

Public API: the ``hwopt`` marker factories, :class:`Backend` for your own
backends, :class:`Measurement`, and :func:`measure` / :func:`compare` for use
without pytest.
"""

from __future__ import annotations

from typing import Any

from .api import Comparison, compare, measure
from .backends.base import Backend
from .markers import hwopt
from .measurement import Measurement

__all__ = ["Backend", "Comparison", "Measurement", "compare", "hwopt", "measure", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pytest-hwopt")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'pytest_hwopt' has no attribute {name!r}")
