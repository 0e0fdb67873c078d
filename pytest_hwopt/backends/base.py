"""The backend interface and the registry the ``pytest_hwopt_backends`` hook fills."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device


class BackendError(RuntimeError):
    """A stage of preparing a model failed; the message names the stage."""


class Backend:
    """A way to run a PyTorch model: subclass it and return instances from the hook.

    ``prepare`` turns the eager module into a callable that takes
    ``*example_inputs`` and returns outputs like the module.
    """

    name: str = ""
    #: precisions this backend can prepare; others make the test skip with a reason
    precisions: tuple[str, ...] = ("fp32",)
    #: modules that must be importable for this backend (checked without importing)
    requires_modules: tuple[str, ...] = ()
    #: preparation can take long (a compile, an engine build): announced in the terminal
    slow_to_prepare: bool = False

    def __init__(self, name: str | None = None) -> None:
        if name:
            self.name = name  # several configurations of one backend side by side
        self._facts: dict[str, Any] = {}

    def unavailable_reason(self, device: Device) -> str | None:
        """Why this backend cannot run on ``device``, or None when it can."""
        return missing_modules(self.requires_modules)

    def prepare(self, model: Any, example_inputs: Sequence[Any], device: Device,
                precision: str) -> Callable[..., Any]:
        raise NotImplementedError(f"backend {self.name!r} does not implement prepare()")

    def describe(self) -> dict[str, Any]:
        """Facts about how the last ``prepare`` went (exporter used, graph breaks, ...)."""
        return dict(getattr(self, "_facts", {}))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def first_line(exc: BaseException, limit: int | None = None, empty: str | None = None) -> str:
    """The first line of ``exc``'s message (at most ``limit`` characters); for an empty
    message ``empty``, or the exception's type name when ``empty`` is None."""
    text = str(exc).strip().splitlines()
    if text:
        return text[0][:limit]
    return type(exc).__name__ if empty is None else empty


def missing_modules(modules: Iterable[str]) -> str | None:
    """A reason naming the modules that cannot be imported, found without importing them."""
    missing = []
    for mod in modules:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    if not missing:
        return None
    return f"{', '.join(missing)} not installed"


def collect(contributions: Iterable[Sequence[Any] | None]) -> dict[str, Backend]:
    """Merge what every hook implementation returned into name -> backend."""
    out: dict[str, Backend] = {}
    for group in contributions:
        for backend in group or ():
            if not isinstance(backend, Backend):
                raise TypeError(f"pytest_hwopt_backends returned {backend!r}; expected "
                                "pytest_hwopt.Backend instances")
            if not isinstance(backend.name, str) or not backend.name:
                raise TypeError(f"{backend!r} has no name")
            if backend.name in out:
                raise ValueError(f"two backends are named {backend.name!r}: "
                                 f"{out[backend.name]!r} and {backend!r}")
            out[backend.name] = backend
    return out
