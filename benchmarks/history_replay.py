"""Replay a history store: judge each stored run against the runs before it, as
``--hwopt-compare=history`` would have, with the rules of the code at hand.

``python -m benchmarks.history_replay STORE [--from N] [--out FILE.json]``

For every run of each machine fingerprint from its ``--from``-th on (default 4: three runs
of history are the fewest judged), every variant of that run is judged against the points of
the earlier runs (:func:`pytest_hwopt.results.series.verdict`, the within-run ratio round by
round where the run kept its rounds), with the test's other variants and the variants judged
before it in the run (:func:`pytest_hwopt.results.series.with_neighbours`), in the order the
run stored its results. Printed: per run, the variants judged and those that would have been
flagged (regressions) or reported improved, with the message; then the totals.

A rule changed after a benchmark ran is measured on the same recorded runs this way; it does
not replace running the benchmark again (``benchmarks.history_alarms``), since the store
holds what the old code measured, not what the new code would. Stores of a benchmark run:
``python -m benchmarks.history_alarms --keep-stores DIR``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_hwopt.results import history, series


def replay(points: Sequence[history.Point], first: int) -> list[dict[str, Any]]:
    """The verdicts on each run of ``points`` (one machine) from its ``first``-th run on."""
    runs: list[int] = []
    for p in points:
        if p.run.id not in runs:
            runs.append(p.run.id)
    out = []
    for n, run_id in enumerate(runs, start=1):
        if n < first:
            continue
        earlier = [p for p in points if runs.index(p.run.id) < n - 1]
        now = [p for p in points if p.run.id == run_id]
        by_variant = {(p.test, p.variant): p for p in now}
        verdicts = []
        for p in now:
            ref = by_variant.get((p.test, p.reference or ""))
            verdicts.append(series.judge_run([e for e in earlier if e.test == p.test],
                                             p.test, p.variant, p, p.reference, ref))
        judged = series.with_neighbours(verdicts)
        out.append({
            "run": run_id, "judged": sum(1 for v in judged if v.judged),
            "regressions": [f"{v.test} {v.variant}: {v.describe()}" for v in judged
                            if v.regressed],
            "improvements": [f"{v.test} {v.variant}: {v.describe()}" for v in judged
                             if v.improved]})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history_replay",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("store", help="a history store (SQLite)")
    parser.add_argument("--from", dest="first", type=int, default=4,
                        help="first run judged, counted per machine (default: 4)")
    parser.add_argument("--out", help="also write the verdicts as JSON here")
    args = parser.parse_args(argv)
    with history.open_store(args.store, create=False) as store:
        machines = sorted(store.machines())
        doc = {fid: replay(store.points(fid), args.first) for fid in machines}
    flagged = 0
    for fid, runs in doc.items():
        for r in runs:
            flagged += len(r["regressions"])
            print(f"machine {fid[:12]} run {r['run']}: {r['judged']} judged, "
                  f"{len(r['regressions'])} regression(s), "
                  f"{len(r['improvements'])} improvement(s)")
            for line in r["regressions"]:
                print(f"  {line}")
    print(f"{sum(len(r) for r in doc.values())} runs replayed, {flagged} regression(s)")
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
