"""Do the shipped suites give the same verdicts run after run, quiet and under noise?

``pytest suites`` runs ``--runs`` times per noise condition, each a fresh
process from the repository root with ``--hwopt-json``; every check is keyed by
test, kind, metric, variant and baseline, and the benchmark counts the checks
whose status changed between runs: at all, between ``passed`` and ``failed``
(a flaky verdict), and how many were ever ``inconclusive``. The noise
conditions are those of ``benchmarks.verdicts`` (``quiet``, ``steady``,
``bursty``, ``crowded``).

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.suite_flake --runs 5 --noise quiet,bursty
    .venv/bin/python -m benchmarks.suite_flake --runs 1 --paths suites/test_batching.py  # smoke
    .venv/bin/python -m benchmarks.suite_flake --table-from suite-flake-results.json

Modules: ``changes`` (keys, status changes, counts: pure), ``cli`` (options,
the runs, the report).
"""
