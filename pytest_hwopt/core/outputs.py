"""Compare outputs of two variants: nested tuples/lists/dicts of arrays, tensors, numbers.

Uses NumPy only; tensors are converted through ``detach().cpu()`` by duck typing,
so this module never imports torch.

Both sides are brought to one structure the way an exporter (``torch.export``, ONNX)
flattens outputs: mappings (dicts, Hugging Face ``ModelOutput``) in insertion order,
tuples and lists in order, ``None`` dropped. Leaves are paired by path; when the paths
differ but one side is a flat sequence (what a runtime returns) with as many leaves, they
are paired in that order. A tuple or list of numbers (nested or not) is one array leaf,
compared in one vectorised pass. Leaves that are not numbers (strings, other objects) are
compared by equality.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: how many differing paths a structure mismatch names before it counts the rest
SHOWN_PATHS: Final = 5
_NUMERIC_KINDS: Final = "biufc"


class OutputMismatch(ValueError):
    """Outputs that cannot be compared: another structure, shape or kind."""


@dataclass(frozen=True)
class OutputDiff:
    """How far a candidate's outputs are from the reference's."""

    ok: bool
    max_abs: float
    max_rel: float
    where: str  # e.g. "output[0] at (3, 17)"
    mismatched: int
    total: int
    atol: float
    rtol: float
    rel_l2: float = 0.0  # ||candidate - reference|| / ||reference|| over all elements
    max_rel_l2: float | None = None  # the norm criterion, when it decides
    #: non-numeric leaves that differ: ``"output[1]: 'a' != 'b'"`` (equality decides them)
    unequal: tuple[str, ...] = ()

    def describe(self) -> str:
        text = (f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} at "
                f"{self.where}, relative L2 error {self.rel_l2:.3g}")
        if self.max_rel_l2 is not None:
            text += f" (limit {self.max_rel_l2:g})"
        else:
            text += (f"; {self.mismatched} of {self.total} elements outside "
                     f"atol={self.atol:g} rtol={self.rtol:g}")
        if self.unequal:
            text += "; not equal: " + bounded(self.unequal)
        return text


def bounded(items: Sequence[str], shown: int = SHOWN_PATHS) -> str:
    """The first ``shown`` items, comma-separated, and how many more there are."""
    text = ", ".join(items[:shown])
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


def to_numpy(value: Any) -> npt.NDArray[Any]:
    """An array from a tensor, array or number (bf16/fp16 tensors widened to float32).

    ``value`` is duck-typed: anything with ``detach()`` and ``cpu()`` is a tensor.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if getattr(value, "is_floating_point", lambda: False)():
            value = value.float()
        return np.asarray(value.numpy())
    return np.asarray(value)


def _first_scalar(value: Sequence[Any]) -> Any:
    while isinstance(value, (tuple, list)) and value:
        value = value[0]
    return value


def _number_array(value: Sequence[Any]) -> npt.NDArray[Any] | None:
    """A tuple/list of numbers (nested to any depth, rectangular) as one array, else None."""
    first = _first_scalar(value)
    if not isinstance(first, numbers.Number) or isinstance(first, (tuple, list)):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # ragged, or mixed with things NumPy cannot take in
        return None
    return array if array.dtype.kind in _NUMERIC_KINDS else None


def _leaves(value: Any, path: str, sequence: bool = False
            ) -> Iterator[tuple[str, Any, bool]]:
    """``(path, leaf, came from a Python sequence)`` in exporter order, ``None`` dropped."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for key in value:
            yield from _leaves(value[key], f"{path}[{key!r}]")
    elif isinstance(value, (tuple, list)):
        array = _number_array(value)
        if array is not None:
            yield path, array, True
            return
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value, sequence


def flatten(value: Any, path: str = "output") -> Iterator[tuple[str, Any]]:
    """Leaves of a nested output with their paths (``output[0]``, ``output['logits']``), in
    the order an exporter flattens them: mappings in insertion order, ``None`` dropped, a
    tuple or list of numbers as one array."""
    for leaf_path, leaf, _ in _leaves(value, path):
        yield leaf_path, leaf


def _is_flat(paths: Sequence[str], root: str = "output") -> bool:
    """Paths of a plain sequence of leaves (``output[0]``, ``output[1]``) or one leaf."""
    return all(p == root or (p.startswith(root + "[") and p.count("[") == 1
                             and p[len(root) + 1:-1].isdigit()) for p in paths)


def pair_leaves(candidate: Any, reference: Any) -> list[tuple[str, Any, Any, bool]]:
    """``(path, candidate leaf, reference leaf, from a sequence)`` for every leaf.

    Pairs by path; a flat side (a runtime's tuple of outputs) with as many leaves as the
    other is paired in exporter order, named by the structured side's paths. Raises
    :class:`OutputMismatch` naming at most :data:`SHOWN_PATHS` differing paths.
    """
    cand = list(_leaves(candidate, "output"))
    ref = list(_leaves(reference, "output"))
    cand_paths, ref_paths = [p for p, _, _ in cand], [p for p, _, _ in ref]
    by_path = {p: (leaf, seq) for p, leaf, seq in cand}
    if sorted(cand_paths) == sorted(ref_paths):
        return [(p, by_path[p][0], r, seq or by_path[p][1]) for p, r, seq in ref]
    if len(cand) == len(ref) and (_is_flat(cand_paths) or _is_flat(ref_paths)):
        named = ref if _is_flat(cand_paths) else cand
        return [(n[0], c[1], r[1], c[2] or r[2]) for n, c, r in zip(named, cand, ref)]
    only_cand = [p for p in cand_paths if p not in set(ref_paths)]
    only_ref = [p for p in ref_paths if p not in set(cand_paths)]
    parts = [f"candidate has {len(cand)} output(s), reference has {len(ref)}"]
    if only_cand:
        parts.append(f"only the candidate has {bounded(only_cand)}")
    if only_ref:
        parts.append(f"only the reference has {bounded(only_ref)}")
    raise OutputMismatch("output structure differs: " + "; ".join(parts))


def _location(path: str, index: tuple[int, ...], sequence: bool) -> str:
    if not index:
        return path
    if sequence:  # a Python list reads as one: output[3][1]
        return path + "".join(f"[{i}]" for i in index)
    return f"{path} at {index}"


def _equal(a: Any, b: Any) -> bool:
    """Equality of two leaves that are not numbers; False when they cannot be compared."""
    try:
        return bool(np.array_equal(to_numpy(a), to_numpy(b)))
    except Exception:  # objects whose == does not give one truth value
        return False


def compare(candidate: Any, reference: Any, atol: float, rtol: float,
            rel_l2: float | None = None) -> OutputDiff:
    """Element-wise ``|c - r| <= atol + rtol * |r|`` over all numeric leaves, or with
    ``rel_l2`` the relative L2 error over them at most ``rel_l2``; other leaves must be
    equal. Raises :class:`OutputMismatch` for another structure or shape."""
    worst_abs, worst_rel, where = 0.0, 0.0, "-"
    bad = total = 0
    err_sq = ref_sq = 0.0
    unequal: list[str] = []
    for path, c, r, sequence in pair_leaves(candidate, reference):
        a, b = to_numpy(c), to_numpy(r)
        if a.dtype.kind not in _NUMERIC_KINDS or b.dtype.kind not in _NUMERIC_KINDS:
            if not _equal(c, r):
                unequal.append(f"{path}: {_short(c)} != {_short(r)}")
            continue
        if a.shape != b.shape:
            raise OutputMismatch(f"{path}: shape {tuple(a.shape)} differs from the "
                                 f"reference's {tuple(b.shape)}")
        wide = np.complex128 if "c" in (a.dtype.kind, b.dtype.kind) else np.float64
        a64 = a.astype(wide, copy=False)
        b64 = b.astype(wide, copy=False)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            finite = np.isfinite(a64) & np.isfinite(b64)
            # equal infinities, or NaN where the reference has NaN, agree; any other
            # non-finite value is infinitely wrong
            agree = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
            diff = np.where(finite, np.abs(a64 - b64), np.where(agree, 0.0, np.inf))
            scale = np.where(np.isfinite(b64), np.abs(b64), 0.0)
            rel = np.where(diff > 0, diff / np.maximum(scale, np.finfo(np.float64).tiny), 0.0)
            limit = atol + rtol * scale
        bad += int(np.count_nonzero(diff > limit))
        finite_diff = np.where(np.isfinite(diff), diff, 0.0)
        err_sq += float(np.sum(finite_diff * finite_diff))
        ref_sq += float(np.sum(scale * scale))
        total += diff.size
        if diff.size and float(diff.max()) > worst_abs:
            idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
            worst_abs = float(diff.max())
            where = _location(path, tuple(int(i) for i in idx), sequence)
        if diff.size:
            worst_rel = max(worst_rel, float(np.max(rel)))
    rel_l2_err = (err_sq ** 0.5) / (ref_sq ** 0.5) if ref_sq > 0 else (
        0.0 if err_sq == 0 else np.inf)
    rel_l2_err = float(rel_l2_err)
    ok = (bad == 0 if rel_l2 is None else rel_l2_err <= rel_l2) and not unequal
    return OutputDiff(ok, worst_abs, worst_rel, where, bad, total, atol, rtol, rel_l2_err,
                      rel_l2, tuple(unequal))


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
