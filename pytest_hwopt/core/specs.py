"""Budget specifications: the validated form of the ``hwopt_*`` markers.

Pure: no pytest, no torch. A marker becomes a :class:`Spec` through
:func:`parse_marker`, which names the marker and the argument on bad input.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pytest_hwopt.core import kinds
from pytest_hwopt.core.accuracy import TOLERANCES, Tolerance
from pytest_hwopt.core.devicekeys import (
    Budget,
    DeviceKeyError,
    check_key,
    check_keys,
    feature_key,
    resolve_budget,
)
from pytest_hwopt.core.kinds import Signature

__all__ = ["BUDGET_KINDS", "SIGNATURES", "TOLERANCES", "Budget", "Requirement", "Signature",
           "Spec", "SpecError", "Tolerance", "parse_marker", "parse_requires", "resolve_budget"]


class SpecError(ValueError):
    """A marker argument that can never describe a valid budget."""


#: kind -> the arguments its marker accepts; follows the registry (:mod:`.kinds`)
SIGNATURES: Final[Mapping[str, Signature]] = kinds.KindMap(lambda kind: kind.signature)
#: the budget kinds, in registration order; follows the registry
BUDGET_KINDS: Final[Sequence[str]] = kinds.KindNames()


@dataclass(frozen=True)
class Spec:
    """One validated budget marker."""

    kind: str
    values: Mapping[str, Budget] = field(default_factory=dict)
    vs: str | None = None
    of: str | None = None
    #: arguments that name a choice (``{"metric": "ttft"}``), absent when left out
    options: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {**self.values, **self.options}.items())
        return f"hwopt.{self.kind}({args})"


@dataclass(frozen=True)
class Requirement:
    """``hwopt.requires(device=..., backends=...)``."""

    devices: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()


def parse_marker(kind: str, args: Sequence[object], kwargs: Mapping[str, object]) -> Spec:
    """Validate the arguments of marker ``hwopt_<kind>`` and return its spec."""
    marker = f"hwopt_{kind}"
    sig = SIGNATURES.get(kind)
    if sig is None:
        raise SpecError(f"unknown budget marker {marker!r}; known: {', '.join(BUDGET_KINDS)}")
    if len(args) > len(sig.params):
        raise SpecError(f"{marker}: takes at most {len(sig.params)} positional arguments "
                        f"({', '.join(sig.params)}), got {len(args)}")
    given: dict[str, object] = dict(zip(sig.params, args))
    for key, value in kwargs.items():
        if key not in sig.params:
            raise SpecError(f"{marker}: unknown argument {key!r}; "
                            f"it accepts {', '.join(sig.params)}")
        if key in given:
            raise SpecError(f"{marker}: argument {key!r} given twice")
        given[key] = value
    for key in sig.required:
        if given.get(key) is None:
            raise SpecError(f"{marker}: missing required argument {key!r}")
    if sig.one_of and all(given.get(k) is None for k in sig.one_of):
        raise SpecError(f"{marker}: give at least one of {', '.join(sig.one_of)}")
    values: dict[str, Budget] = {}
    for key in sig.numbers + sig.non_negative:
        if given.get(key) is not None:
            values[key] = _budget(marker, key, given[key], allow_zero=key in sig.non_negative)
    names: dict[str, str | None] = {}
    for key in ("vs", "of"):
        value = given.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise SpecError(f"{marker}: {key!r} must be a variant name (a non-empty string), "
                            f"got {value!r}")
        names[key] = value if isinstance(value, str) else None
    for key, whole in sig.fractions:
        for fraction in _numbers(values[key]) if key in values else ():
            if fraction > 1.0:
                raise SpecError(f"{marker}: {key!r} is a fraction of {whole} in (0, 1], "
                                f"got {fraction}")
    options: dict[str, str] = {}
    for key, allowed in sig.choices:
        value = given.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or value not in allowed:
            raise SpecError(f"{marker}: {key!r} must be one of {', '.join(map(repr, allowed))} "
                            f"(or left out), got {value!r}")
        options[key] = value
    for key in sig.settings:
        value = given.get(key)
        if value is not None:
            options[key] = repr(_number(f"{marker}: {key!r}", value, allow_zero=False))
    return Spec(kind, values, names["vs"], names["of"], options)


def parse_requires(args: Sequence[object], kwargs: Mapping[str, object]) -> Requirement:
    """Validate ``hwopt_requires(device=None, backends=None)``."""
    allowed = ("device", "backends")
    given = dict(zip(allowed, args))
    for key, value in kwargs.items():
        if key not in allowed:
            raise SpecError(f"hwopt_requires: unknown argument {key!r}; "
                            "it accepts device, backends")
        if key in given:
            raise SpecError(f"hwopt_requires: argument {key!r} given twice")
        given[key] = value
    if len(args) > len(allowed):
        raise SpecError("hwopt_requires: takes at most 2 positional arguments (device, backends)")
    devices = _names("device", given.get("device"))
    for name in devices:
        try:
            check_key(name)  # a CPU feature key (cpu+amx_bf16) must be well formed
            feature_key(name)
        except DeviceKeyError as exc:
            raise SpecError(f"hwopt_requires: {exc}") from None
    return Requirement(devices, _names("backends", given.get("backends")))


def _names(key: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        names: tuple[object, ...] = (value,)
    elif isinstance(value, Iterable):
        names = tuple(value)
    else:
        raise SpecError(f"hwopt_requires: {key!r} must be a name or a list of names, "
                        f"got {value!r}")
    if not names or not all(isinstance(n, str) and n for n in names):
        raise SpecError(f"hwopt_requires: {key!r} must be a name or a list of names, got {value!r}")
    return tuple(str(n) for n in names)


def _budget(marker: str, key: str, value: object, *, allow_zero: bool) -> Budget:
    if isinstance(value, Mapping):
        if not value:
            raise SpecError(f"{marker}: {key!r} per device is empty")
        out: dict[str, float] = {}
        for device, number in value.items():
            if not isinstance(device, str) or not device:
                raise SpecError(f"{marker}: {key!r} per device needs device names as keys, "
                                f"got {device!r}")
            out[device] = _number(f"{marker}: {key!r}[{device!r}]", number, allow_zero)
        try:
            check_keys(out)
        except DeviceKeyError as exc:
            raise SpecError(f"{marker}: {key!r} per device: {exc}") from None
        return out
    return _number(f"{marker}: {key!r}", value, allow_zero)


def _number(where: str, value: object, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError(f"{where} must be a number or a per-device dict like "
                        f"{{'cpu': 1.5, 'cuda': 3.0}}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise SpecError(f"{where} must be {'non-negative' if allow_zero else 'positive'} "
                        f"and finite, got {value!r}")
    return number


def _numbers(value: Budget) -> list[float]:
    return list(value.values()) if isinstance(value, Mapping) else [value]
