"""pytest-hwopt: inference optimisation claims as pytest assertions.

Public API: the ``hwopt`` marker factories, :class:`Backend` for your own
backends, :class:`Measurement`, :func:`measure` / :func:`compare` for use
without pytest, and :class:`InconclusiveWarning`, issued for a check the measurement
could not decide (``-W error::pytest_hwopt.InconclusiveWarning`` fails such tests).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hwopt.api import Comparison, compare, measure
    from pytest_hwopt.backends.base import Backend
    from pytest_hwopt.core.measurement import Measurement
    from pytest_hwopt.core.outcomes import InconclusiveWarning
    from pytest_hwopt.markers import hwopt

__all__ = ["Backend", "Comparison", "InconclusiveWarning", "Measurement", "compare", "hwopt",
           "measure", "__version__"]

# each name loads its module on first use, so loading the plugin stays cheap
_LAZY = {"Backend": ".backends.base", "Comparison": ".api", "compare": ".api", "hwopt": ".markers",
         "measure": ".api", "Measurement": ".core.measurement",
         "InconclusiveWarning": ".core.outcomes"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pytest-hwopt")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'pytest_hwopt' has no attribute {name!r}")
