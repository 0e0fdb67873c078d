"""The GPU check as pytest tests: fixtures, a time budget, and the summary files.

Each test that asks for ``gpu_record`` is one section of the check: what it records
(figures, named checks) goes into the summary, and a check that does not hold fails the
test once its body has run (so every check of the section is still recorded).

    pytest tests/gpu --gpu-check-out=DIR [--gpu-check-budget-s=470]

writes DIR/gpu-check.json and DIR/gpu-check.md (shape in ``gpu_check.py``), rewritten
after each section so a run cut short still leaves what it got; ``HWOPT_GPU_CHECK_OUT``
does the same as the option. Without either nothing is written. With a budget, a section
marked ``gpu_check(min_s=...)`` is skipped when less time than that is left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import gpu_check
import pytest

if TYPE_CHECKING:
    from pytest_hwopt.hardware.devices import Device
    from pytest_hwopt.hardware.nvml import NvmlProbe

OUT_ENV = "HWOPT_GPU_CHECK_OUT"
FIXTURE = "gpu_record"  # a test that asks for it is a section
PAYLOAD = "gpu_check_section"  # user property carrying a finished section

section_key = pytest.StashKey[gpu_check.Section]()
writer_key = pytest.StashKey["SummaryWriter"]()
deadline_key = pytest.StashKey["float | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpu-check", "the GPU check (tests/gpu)")
    group.addoption("--gpu-check-out", metavar="DIR", default=None,
                    help=f"write gpu-check.json and gpu-check.md to DIR (or set {OUT_ENV})")
    group.addoption("--gpu-check-budget-s", metavar="S", type=float, default=None,
                    help="wall-clock budget of the GPU check: a section is skipped when less "
                         "time is left than it needs (default: no budget)")


def out_dir(config: pytest.Config) -> Path | None:
    """Where the summary goes: ``--gpu-check-out``, else ``HWOPT_GPU_CHECK_OUT``, else None."""
    value = config.getoption("gpu_check_out", None) or os.environ.get(OUT_ENV)
    return Path(value).resolve() if value else None


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu_check(min_s): a GPU check section needing about min_s seconds of "
                   "--gpu-check-budget-s")
    budget = config.getoption("gpu_check_budget_s", None)
    config.stash[deadline_key] = time.monotonic() + budget if budget is not None else None
    out = out_dir(config)
    if out is not None and not _is_worker(config):
        writer = SummaryWriter(gpu_check.Summary(gpu_check.cuda_or_reason(), budget), out)
        config.stash[writer_key] = writer
        config.pluginmanager.register(writer, "gpu-check-summary")


def pytest_unconfigure(config: pytest.Config) -> None:
    writer = config.stash.get(writer_key, None)
    if writer is not None:
        del config.stash[writer_key]
        config.pluginmanager.unregister(writer)


class SummaryWriter:
    """Collects finished sections (in the controller, for pytest-xdist workers' reports too)
    and rewrites the summary files after each one and at the end."""

    def __init__(self, summary: gpu_check.Summary, out: Path) -> None:
        self.summary = summary
        self.out = out
        summary.write(out)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == PAYLOAD and isinstance(value, dict):
                self.summary.add(value)
                self.summary.write(self.out)

    def pytest_sessionfinish(self) -> None:
        self.summary.finish()
        self.summary.write(self.out)


def _section(item: pytest.Item) -> gpu_check.Section:
    if section_key not in item.stash:
        name = getattr(item, "originalname", item.name).removeprefix("test_")
        callspec = getattr(item, "callspec", None)
        item.stash[section_key] = gpu_check.Section(
            f"{name}[{callspec.id}]" if callspec is not None else name)
    return item.stash[section_key]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield
    section = item.stash.get(section_key, None)
    if section is not None and section.failed():
        raise gpu_check.ChecksFailed(section.name, section.failed())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if FIXTURE not in getattr(item, "fixturenames", ()):
        return report
    section = _section(item)
    section.seconds += report.duration
    if report.skipped and isinstance(report.longrepr, tuple):
        section.skipped(str(report.longrepr[2]).removeprefix("Skipped: "))
    elif report.failed and call.excinfo is not None \
            and not call.excinfo.errisinstance(gpu_check.ChecksFailed):
        section.raised(f"{call.excinfo.typename}: {call.excinfo.value}",
                       report.longreprtext[-4000:])
    if report.when == "teardown":
        report.user_properties.append((PAYLOAD, section.payload()))
    return report


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture
def gpu_record(request: pytest.FixtureRequest) -> gpu_check.Section:
    """This test's section: ``gpu_record(name=value, ...)`` records figures,
    ``gpu_record.check(name, ok, detail)`` a check, ``gpu_record.fact(gpu=...)`` a fact.
    Skips the test when the check's time budget has too little left for it."""
    marker = request.node.get_closest_marker("gpu_check")
    min_s = float(marker.kwargs.get("min_s", 0.0)) if marker is not None else 0.0
    why = gpu_check.budget_skip_reason(time_left(request.config), min_s)
    if why is not None:
        pytest.skip(why)
    return _section(request.node)


def time_left(config: pytest.Config) -> float | None:
    """Seconds of ``--gpu-check-budget-s`` left, or None without a budget."""
    deadline = config.stash.get(deadline_key, None)
    return None if deadline is None else deadline - time.monotonic()


@pytest.fixture
def gpu_time_left(request: pytest.FixtureRequest) -> Callable[[], float | None]:
    """A function giving the seconds of the check's budget left (None: no budget)."""
    return lambda: time_left(request.config)


@pytest.fixture
def gpu_check_out(request: pytest.FixtureRequest) -> Path | None:
    """The folder the summary goes to, created; None when no summary is asked for."""
    out = out_dir(request.config)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def gpu_out(gpu_check_out: Path | None, tmp_path: Path) -> Path:
    """The summary's folder when one is set, else this test's temporary folder."""
    return gpu_check_out if gpu_check_out is not None else tmp_path


@pytest.fixture(scope="session")
def cuda_torch() -> ModuleType:
    """torch with a usable CUDA device; skips with what was found otherwise."""
    torch, why_not = gpu_check.cuda_or_reason()
    if why_not is not None or torch is None:
        pytest.skip(why_not or "CUDA not available")
    return torch


@pytest.fixture
def cuda(cuda_torch: ModuleType, request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """torch on CUDA; under pytest-xdist the device is held by this test alone (the
    plugin's per-device lock), so two workers never measure on it at once."""
    if not _is_worker(request.config):
        yield cuda_torch
        return
    from pytest_hwopt.hardware.devlock import device_lock

    with device_lock("cuda:0"):
        yield cuda_torch


@pytest.fixture(scope="session")
def cuda_device(cuda_torch: ModuleType) -> Device:
    from pytest_hwopt.hardware import devices

    return devices.resolve("cuda")


@pytest.fixture(scope="session")
def nvml_probe(cuda_torch: ModuleType) -> Iterator[NvmlProbe]:
    """NVML for cuda:0, found by UUID or PCI bus id (``available()`` False, with a reason,
    where it cannot answer)."""
    from pytest_hwopt.hardware.nvml import NvmlProbe, nvml_ids

    probe = NvmlProbe(nvml_ids(0))
    yield probe
    probe.close()
