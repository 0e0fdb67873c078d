"""Per-device values: which entry of a ``{device: value}`` map applies to this machine.

Pure: no pytest, no torch. A machine is described by its device keys, most specific
first, e.g. ``["NVIDIA H100 80GB HBM3", "cuda:0", "cuda"]`` or, for a CPU whose flags
were read, ``["AMD EPYC 9R14", "cpu+avx2", "cpu-amx_int8", ..., "cpu"]`` (one feature key
per recognised flag, ``+`` present, ``-`` absent: :func:`cpu_feature_keys`).

The keys of a budget map, from most to least specific:

* a GPU or CPU name, or part of it (``"H100"``, ``"EPYC"``); an exact name before a part;
* ``cuda:N``;
* a CPU feature key: ``"cpu+avx512_vnni"`` (a CPU with that flag), ``"cpu-avx512_vnni"``
  (one without it), or several conditions at once, ``"cpu+avx2-avx512_vnni"``. Of two
  feature keys that match, the one whose conditions include the other's wins. Where two
  keys can match one CPU and neither includes the other (``"cpu+avx2"`` and
  ``"cpu+avx512_vnni"``), the map must also hold the key for CPUs with both
  (``"cpu+avx2+avx512_vnni"``), else it is an error (:func:`check_keys`). A feature key
  never matches where the CPU's flags are unknown (no ``/proc/cpuinfo``);
* the device kind, ``cpu`` or ``cuda``.

Flag names are those of Linux's ``/proc/cpuinfo`` listed in :data:`CPU_FEATURES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Final, Union

__all__ = ["CPU_FEATURES", "Budget", "DeviceKeyError", "FeatureKey", "check_key", "check_keys",
           "cpu_feature_keys", "feature_key", "key_rank", "names_device", "resolve_budget"]

#: a budget value: one number, or one per device (``{"cpu": 1.5, "H100": 3.0}``)
Budget = Union[float, Mapping[str, float]]

#: CPU flags (``/proc/cpuinfo`` spelling) that inference speed depends on: the ones recorded
#: with results (``cpu_flags``) and the ones a feature key may name. x86: AVX2/FMA, AVX-512,
#: bf16/fp16 and int8 dot products (VNNI), AMX tiles; Arm: int8 dot products (asimddp,
#: i8mm), SVE.
CPU_FEATURES: Final[tuple[str, ...]] = (
    "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8", "asimddp", "i8mm", "sve")

_KIND_KEYS = ("cpu", "cuda")
_FEATURE_PREFIX = re.compile(r"^(cpu|cuda)\s*[+-]|^[+-]")
_FEATURE_KEY = re.compile(r"^cpu((?:[+-][a-z0-9_]+)+)$")
_CONDITION = re.compile(r"([+-])([a-z0-9_]+)")
_EXAMPLE = "'cpu+avx512_vnni' (CPUs with the flag) or 'cpu-avx512_vnni' (without)"


class DeviceKeyError(ValueError):
    """A key of a per-device map that can never match as meant; the message names the key
    (and, for a feature key, the recognised flags)."""


@dataclass(frozen=True)
class FeatureKey:
    """A parsed CPU feature key: the flags the CPU must have and those it must lack."""

    text: str
    has: frozenset[str]
    lacks: frozenset[str]

    @property
    def conditions(self) -> frozenset[tuple[str, bool]]:
        return frozenset({(f, True) for f in self.has} | {(f, False) for f in self.lacks})

    def matches(self, flags: Mapping[str, bool]) -> bool:
        """Whether a CPU with ``flags`` (flag -> present, every recognised flag) matches."""
        return all(flags.get(f) is True for f in self.has) and \
            all(flags.get(f) is False for f in self.lacks)

    def compatible(self, other: FeatureKey) -> bool:
        """Whether one CPU can match both keys (no flag wanted by one and excluded by the
        other)."""
        return not (self.has & other.lacks or self.lacks & other.has)


def _recognised() -> str:
    return ", ".join(CPU_FEATURES)


def feature_key(key: str) -> FeatureKey | None:
    """``key`` parsed as a CPU feature key; None when it is not one (a name or a kind).

    Case and surrounding spaces are ignored. :class:`DeviceKeyError` for a key written like
    one that is malformed (``"cpu+"``, ``"cpu+avx2+avx2"``, ``"cpu+fma-fma"``, ``"cuda+fma"``,
    ``"+fma"``) or names a flag not in :data:`CPU_FEATURES`; the message lists them.
    """
    text = key.strip().lower()
    if not _FEATURE_PREFIX.match(text):
        return None
    if text.startswith("cuda"):
        raise DeviceKeyError(f"device key {key!r}: feature keys are for CPUs; write {_EXAMPLE}")
    found = _FEATURE_KEY.match(text)
    if found is None:
        raise DeviceKeyError(f"device key {key!r} is malformed; a CPU feature key is 'cpu' "
                             f"followed by +flag or -flag, e.g. {_EXAMPLE}; recognised flags: "
                             f"{_recognised()}")
    has: set[str] = set()
    lacks: set[str] = set()
    for sign, flag in _CONDITION.findall(found.group(1)):
        if flag not in CPU_FEATURES:
            raise DeviceKeyError(f"device key {key!r}: unknown CPU flag {flag!r}; recognised "
                                 f"flags: {_recognised()}")
        if flag in has or flag in lacks:
            raise DeviceKeyError(f"device key {key!r} names flag {flag!r} twice")
        (has if sign == "+" else lacks).add(flag)
    return FeatureKey(key, frozenset(has), frozenset(lacks))


def check_key(key: str) -> None:
    """:class:`DeviceKeyError` for a key that can never match as meant: a malformed feature
    key (:func:`feature_key`) or a bare flag name (``"avx2"``, which reads as a CPU name)."""
    if feature_key(key) is None and key.strip().lower() in CPU_FEATURES:
        flag = key.strip().lower()
        raise DeviceKeyError(f"device key {key!r} is a CPU flag, not a device; write "
                             f"'cpu+{flag}' (CPUs with it) or 'cpu-{flag}' (without)")


def check_keys(keys: Iterable[str]) -> None:
    """Validate the keys of one per-device map (:func:`check_key` each), and that its feature
    keys pick one entry on every CPU: no two with the same conditions, and two that can match
    one CPU without either's conditions including the other's need the key of their union.
    :class:`DeviceKeyError` naming the keys otherwise."""
    features: list[FeatureKey] = []
    for key in keys:
        check_key(key)
        parsed = feature_key(key)
        if parsed is not None:
            features.append(parsed)
    present = {f.conditions for f in features}
    for a, b in combinations(features, 2):
        if a.conditions == b.conditions:
            raise DeviceKeyError(f"device keys {a.text!r} and {b.text!r} name the same CPUs")
        if not a.compatible(b) or a.conditions <= b.conditions or b.conditions <= a.conditions:
            continue
        union = FeatureKey("", a.has | b.has, a.lacks | b.lacks)
        if union.conditions not in present:
            narrowed = FeatureKey("", a.has | (b.lacks - a.lacks), a.lacks | (b.has - a.has))
            raise DeviceKeyError(
                f"device keys {a.text!r} and {b.text!r} both match a CPU {_describe(union)}, "
                f"and neither is more specific; add {_spell(union)!r} for such CPUs, or "
                f"narrow one key (e.g. {_spell(narrowed)!r})")


def _spell(key: FeatureKey) -> str:
    return "cpu" + "".join(f"+{f}" for f in sorted(key.has)) + \
        "".join(f"-{f}" for f in sorted(key.lacks))


def _describe(key: FeatureKey) -> str:
    parts = ([f"with {', '.join(sorted(key.has))}"] if key.has else []) + \
        ([f"without {', '.join(sorted(key.lacks))}"] if key.lacks else [])
    return " and ".join(parts)


def cpu_feature_keys(flags: Iterable[str]) -> list[str]:
    """Device keys of a CPU with ``flags`` (its recognised flags): ``cpu+F`` for each flag of
    :data:`CPU_FEATURES` it has, then ``cpu-F`` for each it lacks."""
    have = {f.lower() for f in flags}
    return ([f"cpu+{f}" for f in CPU_FEATURES if f in have]
            + [f"cpu-{f}" for f in CPU_FEATURES if f not in have])


def _device_flags(device_keys: Sequence[str]) -> tuple[int, dict[str, bool]] | None:
    """Where the feature keys start among ``device_keys`` and the flags they state; None
    when the device has none (a GPU, or a CPU whose flags are unknown)."""
    start: int | None = None
    flags: dict[str, bool] = {}
    for n, device_key in enumerate(device_keys):
        parsed = _quiet_feature_key(device_key)
        if parsed is None:
            continue
        start = n if start is None else start
        flags.update({f: True for f in parsed.has})
        flags.update({f: False for f in parsed.lacks})
    return None if start is None else (start, flags)


def _quiet_feature_key(key: str) -> FeatureKey | None:
    try:
        return feature_key(key)
    except DeviceKeyError:
        return None


def names_device(wanted: str, device_key: str) -> bool:
    """Whether ``wanted`` (a key of a per-device map) names ``device_key``.

    Equal ignoring case; or, for a GPU or CPU name (anything but ``cpu``, ``cuda``,
    ``cuda:N`` and feature keys), contained in the device key ignoring case: ``"H100"``
    names ``"NVIDIA H100 80GB HBM3"``. A device's feature keys are named only by feature
    keys (:func:`key_rank`), never by part of their spelling.
    """
    want, have = wanted.strip().lower(), device_key.lower()
    if _FEATURE_PREFIX.match(want) or _FEATURE_PREFIX.match(have):
        return False
    if want == have:
        return True
    return want not in _KIND_KEYS and not want.startswith("cuda:") and want in have


def key_rank(key: str, device_keys: Sequence[str]) -> tuple[int, int] | None:
    """How specifically ``key`` names the device described by ``device_keys`` (most specific
    first); lower is more specific, None when it does not name it.

    ``(n, 0)`` when it equals device key ``n``, ``(n, 1)`` when it names it
    (:func:`names_device`); a matching feature key ranks at the device's first feature key,
    ``(n, -conditions)``, so that more conditions are more specific.
    """
    parsed = _quiet_feature_key(key)
    if parsed is not None:
        described = _device_flags(device_keys)
        if described is None or not parsed.matches(described[1]):
            return None
        return described[0], -len(parsed.conditions)
    want = key.strip().lower()
    for n, device_key in enumerate(device_keys):
        if _quiet_feature_key(device_key) is not None:
            continue
        if want == device_key.lower():
            return n, 0
        if names_device(key, device_key):
            return n, 1
    return None


def resolve_budget(value: Budget, device_keys: Sequence[str]) -> tuple[float | None, str]:
    """Pick the entry for this device: the most specific key wins (:func:`key_rank`; equally
    specific ones: the first in the map).

    Returns the value and the key it came from, ``(value, "")`` for a plain number,
    or ``(None, "")`` when the device has no entry.
    """
    if not isinstance(value, Mapping):
        return float(value), ""
    best: tuple[tuple[int, int, int], str, float] | None = None
    for order, (key, number) in enumerate(value.items()):
        rank = key_rank(key, device_keys)
        if rank is not None and (best is None or (*rank, order) < best[0]):
            best = ((*rank, order), key, float(number))
    return (None, "") if best is None else (best[2], best[1])
