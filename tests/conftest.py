"""Shared helpers for the plugin's tests."""

from __future__ import annotations

import numpy  # noqa: F401  (in-process pytester runs cannot import NumPy a second time)
import pytest

# fast engine settings for inner pytest sessions: verdicts on workloads whose cost
# ratio is about 10x need only a few short rounds
FAST = ("--hwopt-device=cpu", "--hwopt-max-time=2", "--hwopt-warmup-ms=5",
        "--hwopt-min-rounds=5", "--hwopt-block-ms=3", "-p", "no:cacheprovider")

WORKLOADS = '''
import numpy as np
from pytest_hwopt import hwopt


def spin(n):
    """Pure-Python work whose cost is proportional to n."""
    total = 0
    for i in range(n):
        total += i
    return total


def slow():
    return spin(20_000)


def fast():
    return spin(2_000)
'''


@pytest.fixture
def fast_args() -> tuple[str, ...]:
    return FAST


@pytest.fixture
def workloads() -> str:
    return WORKLOADS
