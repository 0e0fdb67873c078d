"""How often does a speedup claim get the right verdict, and how long does a verdict take?

A pair of variants with a true speedup is judged against two budgets a margin
(15%) either side of the truth: below it the right verdict is *pass*, above it
*fail*. Pairs (``--workload``):

* ``3n``: the same pure-Python loop run n and 3n times, true speedup 3.0
  (budgets 2.55 and 3.45); ``repeat``: the slow one as three calls of n;
* ``ort-mlp``: ONNX Runtime vs eager PyTorch on a 64-128-16 MLP at batch 32,
  multi-threaded, through the plugin's model path; its true ratio is the median
  over fresh report-only processes on the quiet machine, measured first.

Each verdict is one whole ``pytest`` subprocess run in a fresh temporary
directory, under conditions the benchmark creates itself:

* ``quiet``: nothing added;
* ``steady``: one process spinning a pure-Python loop, pinned to core 0;
* ``bursty``: neighbours that switch on and off at random (busy 5-200 ms,
  idle 5-200 ms, one or two of them spinning in each busy phase);
* ``crowded``: one spinning process pinned to every usable core.

A verdict is wrong when it is a pass or fail contrary to the truth; an
``inconclusive`` check status is counted apart (``outcomes``).

Tools compared:

* ``hwopt``: a test with ``@hwopt.speedup(min=..., vs="slow")``; the verdict is
  the speedup check's ``status`` in ``--hwopt-json`` (cross-checked with the exit
  code).
* ``pytest-benchmark``: what a pytest-benchmark user does today: two
  ``benchmark`` tests (one per variant) with the plugin's defaults,
  ``--benchmark-json``, and the ratio of the two ``stats.median`` compared with
  the budget. The ratio does not depend on the budget, so one run gives the
  verdict on both budgets (it is what a user would run to check either claim).

The pytest-hwopt package is copied once at start and every run imports that
copy (``--live-plugin`` turns this off), so edits to the working tree during a
long run do not mix versions; its SHA-256 is in the JSON. For each run the
benchmark also records the CPU used by its own noise processes and by everything
else on the machine ("outside" load), so a condition spoilt by other work shows.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.verdicts --repetitions 3                    # smoke run
    .venv/bin/python -m benchmarks.verdicts --repetitions hwopt=100,pytest-benchmark=30 \\
        --noise quiet,steady,bursty,crowded --out results.json
    .venv/bin/python -m benchmarks.verdicts --workload ort-mlp --out ort.json  # model pair
    .venv/bin/python -m benchmarks.verdicts --table-from results.json          # table again

Modules: ``workload`` (the pairs, the test files), ``outcomes`` (right, wrong,
inconclusive; budgets around a truth), ``noise`` (the
neighbour processes), ``cpu`` (who used the CPU during a run), ``environment``
(machine facts, the interpreter's packages, the plugin copy), ``runs`` (one
pytest subprocess and its outcome), ``records`` (the results file's shape),
``summary`` (table and report), ``cli`` (options and the main loop).

The benchmark itself needs only the standard library and
``pytest_hwopt.core.stats``; the pytest runs use the interpreter given by
``--python`` (default: the one running the benchmark), which must have
pytest-hwopt and, for the ``pytest-benchmark`` tool, pytest-benchmark installed
(for ``ort-mlp`` also torch and onnxruntime).
"""
