"""Hooks pytest-hwopt adds; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_hwopt.backends.base import Backend
    from pytest_hwopt.core.checks import Check
    from pytest_hwopt.core.measurement import Measurement
    from pytest_hwopt.core.specs import Spec
    from pytest_hwopt.results.schema import ResultsDocument


@pytest.hookspec
def pytest_hwopt_backends(config: pytest.Config) -> list[Backend]:
    """Return backends to offer to ``hwopt_backend``; every implementation contributes.

    The built-in backends are registered through this same hook. Example, in a
    ``conftest.py``::

        import torch
        from pytest_hwopt import Backend

        class HalfEager(Backend):
            name = "eager-fp16"

            def unavailable_reason(self, device):
                return None if device.kind == "cuda" else "needs a GPU for fp16 matmuls"

            def prepare(self, model, example_inputs, device, precision):
                half = model.to(device.torch_device).half().eval()

                def run(*inputs):
                    with torch.inference_mode():
                        return half(*(x.half() for x in inputs))

                return run

        def pytest_hwopt_backends(config):
            return [HalfEager()]
    """


@pytest.hookspec
def pytest_hwopt_budgets(item: pytest.Item, specs: list[Spec]) -> None:
    """Called with the budgets a test's markers declared, before it runs; may change the list
    in place (a budgets file adds or overrides entries here).

    Example: a floor under every speedup budget::

        from dataclasses import replace

        def pytest_hwopt_budgets(item, specs):
            specs[:] = [replace(s, values={**s.values, "min": max(s.values["min"], 1.1)})
                        if s.kind == "speedup" else s for s in specs]
    """


@pytest.hookspec
def pytest_hwopt_checks(item: pytest.Item, checks: list[Check],
                        measurements: dict[str, Measurement]) -> None:
    """Called with a test's evaluated checks and its measurements before its verdict; may
    append checks of its own (a baseline comparison does) or annotate them. A failed check
    appended here fails the test like any budget.

    Example: publish every speedup to a metrics system::

        def pytest_hwopt_checks(item, checks, measurements):
            for check in checks:
                if check.kind == "speedup":
                    metrics.gauge(item.nodeid, check.measured)
    """


@pytest.hookspec
def pytest_hwopt_session_results(config: pytest.Config, document: ResultsDocument) -> None:
    """Called once at the end of a run (in the controller under xdist) with the whole results
    document, the same that ``--hwopt-json`` writes: save it, render it, upload it.

    Example::

        def pytest_hwopt_session_results(config, document):
            print(len(document["checks"]), "checks")
    """
