"""Budget specifications: the validated form of the ``hwopt_*`` markers.

Pure: no pytest, no torch. A marker becomes a :class:`Spec` through
:func:`parse_marker`, which names the marker and the argument on bad input.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Final, Mapping, NamedTuple, Sequence, Union

Budget = Union[float, Mapping[str, float]]


class SpecError(ValueError):
    """A marker argument that can never describe a valid budget."""


@dataclass(frozen=True)
class Signature:
    """Parameters a marker accepts, in positional order."""

    params: tuple[str, ...]
    required: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these must be given
    numbers: tuple[str, ...] = ()  # budget values: positive numbers or per-device maps
    non_negative: tuple[str, ...] = ()  # tolerances: zero allowed
    names: tuple[str, ...] = ("vs", "of")  # variant names


SIGNATURES: Final[dict[str, Signature]] = {
    "speedup": Signature(("min", "vs", "of"), required=("min", "vs"), numbers=("min",)),
    "latency": Signature(
        ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "of"),
        one_of=("p50_ms", "p95_ms", "p99_ms", "mean_ms"),
        numbers=("p50_ms", "p95_ms", "p99_ms", "mean_ms"),
    ),
    "throughput": Signature(("min", "of"), required=("min",), numbers=("min",)),
    "memory": Signature(("max_mb", "of"), required=("max_mb",), numbers=("max_mb",)),
    "accuracy": Signature(("atol", "rtol", "vs", "of", "rel_l2"),
                          non_negative=("atol", "rtol", "rel_l2")),
    "cold_start": Signature(("max_s", "of"), required=("max_s",), numbers=("max_s",)),
    "energy": Signature(("max_mj", "of"), required=("max_mj",), numbers=("max_mj",)),
    "roofline": Signature(
        ("min_fraction", "of"), required=("min_fraction",), numbers=("min_fraction",)
    ),
}
BUDGET_KINDS: Final = tuple(SIGNATURES)

class Tolerance(NamedTuple):
    """Element-wise ``|c - r| <= atol + rtol * |r|``; with ``rel_l2``, a norm criterion
    ``||c - r|| <= rel_l2 * ||r||`` decides instead (int8 errors scale with the range)."""

    atol: float
    rtol: float
    rel_l2: float | None = None


# defaults by precision; bf16 keeps 8 mantissa bits; int8 is judged on the relative L2
# error (5%: a signal-to-quantisation-noise ratio of 26 dB)
TOLERANCES: Final[dict[str, Tolerance]] = {
    "fp32": Tolerance(1e-4, 1e-4),
    "fp16": Tolerance(1e-2, 1e-2),
    "bf16": Tolerance(2e-2, 2e-2),
    "int8": Tolerance(1e-1, 1e-1, rel_l2=0.05),
}


@dataclass(frozen=True)
class Spec:
    """One validated budget marker."""

    kind: str
    values: Mapping[str, Budget] = field(default_factory=dict)
    vs: str | None = None
    of: str | None = None

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"hwopt.{self.kind}({args})"


@dataclass(frozen=True)
class Requirement:
    """``hwopt.requires(device=..., backends=...)``."""

    devices: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()


def parse_marker(kind: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Spec:
    """Validate the arguments of marker ``hwopt_<kind>`` and return its spec."""
    marker = f"hwopt_{kind}"
    sig = SIGNATURES.get(kind)
    if sig is None:
        raise SpecError(f"unknown budget marker {marker!r}; known: {', '.join(BUDGET_KINDS)}")
    if len(args) > len(sig.params):
        raise SpecError(f"{marker}: takes at most {len(sig.params)} positional arguments "
                        f"({', '.join(sig.params)}), got {len(args)}")
    given: dict[str, Any] = dict(zip(sig.params, args))
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
    names = {}
    for key in ("vs", "of"):
        value = given.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise SpecError(f"{marker}: {key!r} must be a variant name (a non-empty string), "
                            f"got {value!r}")
        names[key] = value
    if kind == "roofline":
        for fraction in _numbers(values["min_fraction"]):
            if fraction > 1.0:
                raise SpecError(f"{marker}: 'min_fraction' is a fraction of the peak in (0, 1], "
                                f"got {fraction}")
    return Spec(kind, values, names["vs"], names["of"])


def parse_requires(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Requirement:
    """Validate ``hwopt_requires(device=None, backends=None)``."""
    allowed = ("device", "backends")
    given = dict(zip(allowed, args))
    for key, value in kwargs.items():
        if key not in allowed:
            raise SpecError(f"hwopt_requires: unknown argument {key!r}; it accepts device, backends")
        if key in given:
            raise SpecError(f"hwopt_requires: argument {key!r} given twice")
        given[key] = value
    if len(args) > len(allowed):
        raise SpecError("hwopt_requires: takes at most 2 positional arguments (device, backends)")
    return Requirement(_names("device", given.get("device")),
                       _names("backends", given.get("backends")))


def _names(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    try:
        names = tuple(items)
    except TypeError:
        raise SpecError(f"hwopt_requires: {key!r} must be a name or a list of names, "
                        f"got {value!r}") from None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise SpecError(f"hwopt_requires: {key!r} must be a name or a list of names, got {value!r}")
    return names


def _budget(marker: str, key: str, value: Any, *, allow_zero: bool) -> Budget:
    if isinstance(value, Mapping):
        if not value:
            raise SpecError(f"{marker}: {key!r} per device is empty")
        out = {}
        for device, number in value.items():
            if not isinstance(device, str) or not device:
                raise SpecError(f"{marker}: {key!r} per device needs device names as keys, "
                                f"got {device!r}")
            out[device] = _number(f"{marker}: {key!r}[{device!r}]", number, allow_zero)
        return out
    return _number(f"{marker}: {key!r}", value, allow_zero)


def _number(where: str, value: Any, allow_zero: bool) -> float:
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


def resolve_budget(value: Budget, device_keys: Sequence[str]) -> tuple[float | None, str]:
    """Pick the entry for this device: the most specific key wins.

    ``device_keys`` runs from most to least specific, e.g. ``["NVIDIA H100 80GB HBM3",
    "cuda:0", "cuda"]``; a key of the budget matches a device key when equal, or
    (for GPU names) when it is contained in it, ignoring case. Returns the value
    and the key it came from, or ``(None, "")`` when the device has no entry.
    """
    if not isinstance(value, Mapping):
        return float(value), ""
    lowered = {k.lower(): (k, v) for k, v in value.items()}
    for device_key in device_keys:
        dk = device_key.lower()
        if dk in lowered:
            key, number = lowered[dk]
            return float(number), key
        for low, (key, number) in lowered.items():
            if low not in ("cpu", "cuda") and not low.startswith("cuda:") and low in dk:
                return float(number), key
    return None, ""
