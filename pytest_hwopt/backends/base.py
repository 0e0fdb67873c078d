"""The backend interface and the registry the ``pytest_hwopt_backends`` hook fills."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

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
    text = _ESCAPES.sub("", str(exc)).strip().splitlines()
    if text:
        return text[0][:limit]
    return type(exc).__name__ if empty is None else empty


#: terminal colour and cursor codes (ECMA-48 CSI sequences), which some libraries put in messages
_ESCAPES: Final = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: lines of library messages that say how to report a bug rather than what went wrong
_BOILERPLATE: Final = re.compile(
    r"^\s*(-\s|#|\(Refer to|Refer to|Next steps|Error report has been saved|For more "
    r"information|Set TORCH_LOGS|Please (report|file|open)|Create an issue|"
    r"Failed to (export the model with torch\.export|decompose the FX graph|convert the "
    r"exported program))", re.IGNORECASE)

#: causes with a known fix: (pattern searched in every message of the chain, the fix)
KNOWN_FIXES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"\b(Dynamic|Static|Hybrid|EncoderDecoder|Sliding\w*|Offloaded\w*|Quantized\w*)"
                r"Cache\b"),
     "the model returns a key/value cache object (transformers' DynamicCache), which "
     "backends cannot return: build or call the model with use_cache=False "
     "(model.config.use_cache = False) so that it returns tensors only"),
    (re.compile(r"GuardOnDataDependentSymNode|data-dependent expression"),
     "the model branches on a tensor's values (data-dependent control flow), which "
     "torch.export cannot trace: express the branch with torch.where or torch.cond, or move "
     "it out of forward"),
    (re.compile(r"No module named '?onnxscript"),
     "the dynamo ONNX exporter needs onnxscript: pip install onnxscript"),
)


def clean_text(text: str) -> str:
    """``text`` without terminal escape codes and bug-report boilerplate lines, blank lines
    dropped and each remaining line stripped."""
    lines = [line.strip() for line in _ESCAPES.sub("", text).splitlines()]
    return "\n".join(line for line in lines if line and not _BOILERPLATE.match(line))


def cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    return chain


def failure_text(exc: BaseException, limit: int = 300) -> str:
    """What went wrong, in one line: ``Type: message`` of the innermost exception in
    ``exc``'s chain that says something once escape codes and boilerplate are removed
    (the outer type is kept in front when it differs: ``TorchExportError: Unsupported:
    ...``); at most ``limit`` characters of message."""
    for inner in reversed(cause_chain(exc)):
        text = clean_text(str(inner))
        if text:
            head = f"{type(inner).__name__}: {text.splitlines()[0][:limit]}"
            return head if inner is exc else f"{type(exc).__name__}: {head}"
    return type(exc).__name__


def known_fix(exc: BaseException | str) -> str | None:
    """The fix for a known cause found anywhere in ``exc``'s chain (or in a text), or None."""
    texts = ([exc] if isinstance(exc, str)
             else [f"{type(e).__name__}: {e}" for e in cause_chain(exc)])
    for pattern, fix in KNOWN_FIXES:
        if any(pattern.search(t) for t in texts):
            return fix
    return None


def with_fix(message: str, *causes: BaseException | str) -> str:
    """``message`` followed by ``" -- fix: ..."`` when one of ``causes`` is a known one."""
    for cause in causes:
        fix = known_fix(cause)
        if fix:
            return f"{message} -- fix: {fix}"
    return message


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
