"""Compare outputs of two variants: nested tuples/lists/dicts of arrays, tensors, numbers.

Uses NumPy only; tensors are converted through ``detach().cpu()`` by duck typing,
so this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


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

    def describe(self) -> str:
        text = (f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} at "
                f"{self.where}, relative L2 error {self.rel_l2:.3g}")
        if self.max_rel_l2 is not None:
            return text + f" (limit {self.max_rel_l2:g})"
        return text + (f"; {self.mismatched} of {self.total} elements outside "
                       f"atol={self.atol:g} rtol={self.rtol:g}")


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


def flatten(value: Any, path: str = "output") -> Iterator[tuple[str, Any]]:
    """Leaves of a nested output with their paths: ``output[0]``, ``output['logits']``."""
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield from flatten(value[key], f"{path}[{key!r}]")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from flatten(item, f"{path}[{i}]")
    else:
        yield path, value


def compare(candidate: Any, reference: Any, atol: float, rtol: float,
            rel_l2: float | None = None) -> OutputDiff:
    """Element-wise ``|c - r| <= atol + rtol * |r|`` over all leaves, or with ``rel_l2``
    the relative L2 error over all leaves at most ``rel_l2``."""
    cand = list(flatten(candidate))
    ref = list(flatten(reference))
    if [p for p, _ in cand] != [p for p, _ in ref]:
        raise OutputMismatch(f"output structure differs: candidate has "
                             f"{[p for p, _ in cand]}, reference has {[p for p, _ in ref]}")
    worst_abs, worst_rel, where = 0.0, 0.0, "-"
    bad = total = 0
    err_sq = ref_sq = 0.0
    for (path, c), (_, r) in zip(cand, ref):
        if c is None and r is None:
            continue
        a, b = to_numpy(c), to_numpy(r)
        if a.shape != b.shape:
            raise OutputMismatch(f"{path}: shape {tuple(a.shape)} differs from the "
                                 f"reference's {tuple(b.shape)}")
        a64 = a.astype(np.float64, copy=False)
        b64 = b.astype(np.float64, copy=False)
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
            where = f"{path} at {tuple(int(i) for i in idx)}" if diff.ndim else path
        if diff.size:
            worst_rel = max(worst_rel, float(np.max(rel)))
    rel_l2_err = (err_sq ** 0.5) / (ref_sq ** 0.5) if ref_sq > 0 else (
        0.0 if err_sq == 0 else np.inf)
    rel_l2_err = float(rel_l2_err)
    ok = bad == 0 if rel_l2 is None else rel_l2_err <= rel_l2
    return OutputDiff(ok, worst_abs, worst_rel, where, bad, total, atol, rtol, rel_l2_err,
                      rel_l2)
