"""``hwopt.*`` marker factories: readable names for the ``hwopt_*`` pytest markers.

Arguments are validated when a test is set up (one code path for both spellings),
so a bad argument errors that test alone and it can never pass. Unknown keywords
are passed on for that validation to name them.

The budget factories (``hwopt.speedup`` ... ``hwopt.roofline``) and their ini marker
lines come from the budget-kind registry (:mod:`pytest_hwopt.core.kinds`); each
factory's signature is its kind's marker signature, every parameter defaulting to
None so that leaving a required one out errors that test at setup with the marker's
name, rather than the whole module at import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import pytest

from pytest_hwopt.core import kinds

Budget = Union[float, Mapping[str, float]]
MarkerFactory = Callable[..., pytest.MarkDecorator]

_REQUIRES = ("hwopt_requires", "hwopt_requires(device=None, backends=None): skip unless the "
                               "device and backends are available.")


class _MarkerTexts(Mapping[str, str]):
    """marker name -> its ini ``markers`` line: every registered budget kind, then
    ``hwopt_requires``; read afresh on each use, so a kind registered later is listed."""

    def _items(self) -> dict[str, str]:
        texts = {kind.marker: kind.marker_text for kind in kinds.all_kinds()}
        texts[_REQUIRES[0]] = _REQUIRES[1]
        return texts

    def __getitem__(self, name: str) -> str:
        return self._items()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


MARKERS: Mapping[str, str] = _MarkerTexts()


def _factory(kind: kinds.BudgetKind) -> MarkerFactory:
    """``hwopt.<kind>(...)``: binds its arguments like the marker's signature and returns
    ``pytest.mark.hwopt_<kind>`` with every parameter by keyword (None when left out)."""
    sig = kind.signature
    words = {*sig.names, *(key for key, _ in sig.choices)}  # names and choices: strings
    params = [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                annotation="str | None" if p in words else "Budget | None")
              for p in sig.params]
    params.append(inspect.Parameter("unknown", inspect.Parameter.VAR_KEYWORD, annotation="Any"))
    signature = inspect.Signature(params, return_annotation="pytest.MarkDecorator")

    def factory(*args: object, **kwargs: object) -> pytest.MarkDecorator:
        bound = signature.bind(*args, **kwargs)
        unknown = bound.arguments.pop("unknown", {})
        values = {p: bound.arguments.get(p) for p in sig.params}
        mark: pytest.MarkDecorator = getattr(pytest.mark, kind.marker)(**values, **unknown)
        return mark

    factory.__name__ = factory.__qualname__ = kind.name
    factory.__doc__ = f"``pytest.mark.{kind.marker}``: {kind.description}"
    factory.__signature__ = signature  # type: ignore[attr-defined]
    return factory


class _Hwopt:
    """Marker factories; each returns the ``pytest.mark.hwopt_*`` mark it stands for.

    ``hwopt.<kind>`` exists for every registered budget kind (see :data:`MARKERS`).
    """

    if TYPE_CHECKING:
        # What type checkers see of the built-in kinds' factories; at run time they come from
        # the registry (and accept unknown keywords, for setup to name them in its error).
        # tests/core/test_kinds.py keeps these in step with the registry.
        def speedup(self, min: Budget | None = None, vs: str | None = None,
                    of: str | None = None, metric: str | None = None
                    ) -> pytest.MarkDecorator: ...

        def latency(self, p50_ms: Budget | None = None, p95_ms: Budget | None = None,
                    p99_ms: Budget | None = None, mean_ms: Budget | None = None,
                    of: str | None = None) -> pytest.MarkDecorator: ...

        def throughput(self, min: Budget | None = None,
                       of: str | None = None) -> pytest.MarkDecorator: ...

        def memory(self, max_mb: Budget | None = None,
                   of: str | None = None) -> pytest.MarkDecorator: ...

        def accuracy(self, atol: Budget | None = None, rtol: Budget | None = None,
                     vs: str | None = None, of: str | None = None,
                     rel_l2: Budget | None = None) -> pytest.MarkDecorator: ...

        def cold_start(self, max_s: Budget | None = None,
                       of: str | None = None) -> pytest.MarkDecorator: ...

        def energy(self, max_mj: Budget | None = None,
                   of: str | None = None) -> pytest.MarkDecorator: ...

        def roofline(self, min_fraction: Budget | None = None,
                     of: str | None = None) -> pytest.MarkDecorator: ...

        def ttft(self, p50_ms: Budget | None = None, p95_ms: Budget | None = None,
                 p99_ms: Budget | None = None, of: str | None = None) -> pytest.MarkDecorator: ...

        def tpot(self, p50_ms: Budget | None = None, p95_ms: Budget | None = None,
                 p99_ms: Budget | None = None, of: str | None = None) -> pytest.MarkDecorator: ...

        def goodput(self, min: Budget | None = None, ttft_ms: Budget | None = None,
                    tpot_ms: Budget | None = None, e2e_ms: Budget | None = None,
                    of: str | None = None) -> pytest.MarkDecorator: ...

        def failures(self, max: Budget | None = None,
                     of: str | None = None) -> pytest.MarkDecorator: ...

    def __getattr__(self, name: str) -> MarkerFactory:
        kind = kinds.find(name)
        if kind is None:
            raise AttributeError(f"hwopt has no marker {name!r}; budget kinds: "
                                 f"{', '.join(k.name for k in kinds.all_kinds())}, and requires")
        return _factory(kind)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(k.name for k in kinds.all_kinds())})

    def requires(self, device: str | Sequence[str] | None = None,
                 backends: str | Sequence[str] | None = None,
                 **unknown: Any) -> pytest.MarkDecorator:
        return pytest.mark.hwopt_requires(device=device, backends=backends, **unknown)


hwopt = _Hwopt()


def marker_arguments(mark: pytest.Mark) -> tuple[tuple[object, ...], dict[str, object]]:
    """Positional and keyword arguments of a mark, dropping keywords left at None."""
    return tuple(mark.args), {k: v for k, v in mark.kwargs.items() if v is not None}
