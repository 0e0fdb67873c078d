"""Per-device values: which entry of a ``{device: value}`` map applies to this machine.

Pure: no pytest, no torch. A machine is described by its device keys, most specific
first, e.g. ``["NVIDIA H100 80GB HBM3", "cuda:0", "cuda"]`` or ``["cpu"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

#: a budget value: one number, or one per device (``{"cpu": 1.5, "H100": 3.0}``)
Budget = Union[float, Mapping[str, float]]

_KIND_KEYS = ("cpu", "cuda")


def names_device(wanted: str, device_key: str) -> bool:
    """Whether ``wanted`` (a key of a per-device map) names ``device_key``.

    Equal ignoring case; or, for a GPU or CPU name (anything but ``cpu``, ``cuda``
    and ``cuda:N``), contained in the device key ignoring case: ``"H100"`` names
    ``"NVIDIA H100 80GB HBM3"``.
    """
    want, have = wanted.lower(), device_key.lower()
    if want == have:
        return True
    return want not in _KIND_KEYS and not want.startswith("cuda:") and want in have


def resolve_budget(value: Budget, device_keys: Sequence[str]) -> tuple[float | None, str]:
    """Pick the entry for this device: the most specific key wins.

    ``device_keys`` runs from most to least specific; for each of them an equal key
    of the budget is preferred over one that merely names it (:func:`names_device`).
    Returns the value and the key it came from, ``(value, "")`` for a plain number,
    or ``(None, "")`` when the device has no entry.
    """
    if not isinstance(value, Mapping):
        return float(value), ""
    lowered = {k.lower(): (k, v) for k, v in value.items()}
    for device_key in device_keys:
        exact = lowered.get(device_key.lower())
        if exact is not None:
            return float(exact[1]), exact[0]
        for key, number in lowered.values():
            if names_device(key, device_key):
                return float(number), key
    return None, ""
