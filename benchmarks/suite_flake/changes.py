"""Which checks changed status between runs of the same suites: the pure part of the benchmark.

A check is identified across runs by its test id, kind, metric, variant and
baseline (:func:`check_key`); its status is the ``status`` of ``--hwopt-json``
(``passed``, ``failed``, ``inconclusive``, ``skipped``, ``reported``). A check
missing from a run counts as the status ``absent`` there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

ABSENT: Final = "absent"
VERDICTS: Final = frozenset({"passed", "failed"})


def check_key(check: Mapping[str, object]) -> str:
    """``TEST::KIND[METRIC] VARIANT`` plus `` vs BASELINE`` where the check has one.

    ``check`` is one entry of the JSON's ``checks``; missing fields read as
    empty. Two latency percentiles of one variant differ by metric.
    """
    test, kind = check.get("test") or "", check.get("kind") or ""
    metric, variant, vs = check.get("metric") or "", check.get("variant") or "", check.get("vs")
    key = f"{test}::{kind}[{metric}] {variant}"
    return f"{key} vs {vs}" if vs else key


def statuses(doc: Mapping[str, object]) -> dict[str, str]:
    """``{check_key: status}`` of one ``--hwopt-json`` document.

    A key seen twice in one document (a check repeated on purpose) gets
    ``#2``, ``#3``... appended in document order. Raises ``ValueError`` if the
    document has no ``checks`` list.
    """
    checks = doc.get("checks")
    if not isinstance(checks, list):
        raise ValueError("the document has no 'checks' list")
    out: dict[str, str] = {}
    for check in checks:
        if not isinstance(check, Mapping):
            raise ValueError(f"a check is not an object: {check!r}")
        key = base = check_key(check)
        n = 1
        while key in out:
            n += 1
            key = f"{base}#{n}"
        out[key] = str(check.get("status"))
    return out


@dataclass(frozen=True)
class Change:
    """A check whose status was not the same in every run.

    ``history``: its status per run, in run order (``absent`` where the run did
    not report it); ``flipped``: it passed in one run and failed in another, the
    change a suite must never show.
    """

    key: str
    history: tuple[str, ...]

    @property
    def flipped(self) -> bool:
        return VERDICTS <= set(self.history)


def changes(runs: Sequence[Mapping[str, str]]) -> list[Change]:
    """The checks whose status differs between ``runs`` (each ``{key: status}``), by key.

    Fewer than two runs change nothing. Keys are sorted.
    """
    if len(runs) < 2:
        return []
    keys = sorted({k for run in runs for k in run})
    out = []
    for key in keys:
        history = tuple(run.get(key, ABSENT) for run in runs)
        if len(set(history)) > 1:
            out.append(Change(key, history))
    return out


@dataclass(frozen=True)
class FlakeCounts:
    """What the runs of one noise condition show.

    ``checks``: distinct keys over all runs; ``changed``: keys whose status
    changed at all; ``flipped``: keys that passed in one run and failed in
    another; ``inconclusive``: keys inconclusive in at least one run.
    """

    runs: int
    checks: int
    changed: int
    flipped: int
    inconclusive: int


def count(runs: Sequence[Mapping[str, str]]) -> FlakeCounts:
    """:class:`FlakeCounts` of the runs of one condition (each ``{key: status}``)."""
    moved = changes(runs)
    keys = {k for run in runs for k in run}
    incon = {k for run in runs for k, s in run.items() if s == "inconclusive"}
    return FlakeCounts(runs=len(runs), checks=len(keys), changed=len(moved),
                       flipped=sum(1 for c in moved if c.flipped), inconclusive=len(incon))
