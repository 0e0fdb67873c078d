"""Hooks pytest-hwopt adds; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .backends.base import Backend


@pytest.hookspec
def pytest_hwopt_backends(config: pytest.Config) -> "list[Backend]":
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
def pytest_hwopt_checks(item: pytest.Item, checks: "list[Any]") -> None:
    """Called with a test's evaluated checks before its verdict; may inspect or annotate them.

    Example: publish every speedup to a metrics system::

        def pytest_hwopt_checks(item, checks):
            for check in checks:
                if check.kind == "speedup":
                    metrics.gauge(item.nodeid, check.measured)
    """
