"""The fixtures: ``hwopt_device``, ``hwopt_backend`` and ``hwopt_bench`` (thin: they assemble
objects that know nothing of pytest)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwopt._plugin import verdict
from pytest_hwopt._plugin.collection import unavailable
from pytest_hwopt._plugin.state import State, bench_key, specs_key, state_of

if TYPE_CHECKING:
    from pytest_hwopt.core.bench import Bench
    from pytest_hwopt.core.engine import Engine
    from pytest_hwopt.core.specs import Spec, Tolerance
    from pytest_hwopt.hardware.devices import Device


@pytest.fixture(scope="session")
def hwopt_device(pytestconfig: pytest.Config) -> Device:
    """The device tests measure on (``--hwopt-device``)."""
    return state_of(pytestconfig).device()


@pytest.fixture
def hwopt_backend(request: pytest.FixtureRequest) -> str:
    """The backend this test instance runs on; parametrized over ``--hwopt-backends``."""
    name: str = getattr(request, "param", "")
    state = state_of(request.config)
    backends = state.backends()
    if name not in backends:
        raise ValueError(f"hwopt_backend: unknown backend {name!r}; known: {', '.join(backends)}")
    reason = unavailable(name, backends[name], state)
    if reason:
        pytest.skip(reason)
    return name


@pytest.fixture
def hwopt_bench(request: pytest.FixtureRequest) -> Bench:
    """Register variants with ``measure(name, fn)``; they are measured after the test body."""
    from pytest_hwopt.core.bench import Bench

    state = state_of(request.config)
    item = request.node
    specs: list[Spec] = item.stash.get(specs_key, [])
    model_path = _model_path(request, state, specs)
    holder: list[Bench] = []
    bench = Bench(_engine(state), lambda: verdict.stop_rule(specs, holder[0], state),
                  state.measuring, model_path, after_run=lambda b: verdict.annotate(state, b),
                  capture=_graph_capture(state.device()))
    holder.append(bench)
    item.stash[bench_key] = bench
    return bench


def _engine(state: State) -> Engine:
    """An engine on the session's device with the session's sampling settings."""
    from pytest_hwopt.core.engine import Engine, EngineConfig
    from pytest_hwopt.hardware.devices import DeviceError

    settings, device = state.settings, state.device()
    config = EngineConfig(warmup_ms=settings.warmup_ms, block_ms=settings.block_ms,
                          min_rounds=settings.min_rounds, max_time_s=settings.max_time_s,
                          seed=settings.seed)
    if device.kind == "cpu" and "torch" in sys.modules:
        # every variant runs with the same explicit thread count (--hwopt-threads)
        sys.modules["torch"].set_num_threads(settings.threads)
    try:
        timer = device.timer(cold_cache=settings.cache == "cold")
    except DeviceError as exc:
        raise pytest.UsageError(f"--hwopt-cache=cold: {exc}") from None
    return Engine(config, timer=timer, memory=device.memory())


def _model_path(request: pytest.FixtureRequest, state: State, specs: list[Spec]
                ) -> Callable[..., str]:
    """``hwopt_bench.model()``: the model path, with its outcomes turned into pytest's (an
    unavailable backend or precision skips the test, a failed preparation or wrong outputs
    fail it; a misuse raises ``ValueError`` as it is)."""
    from pytest_hwopt.backends.base import BackendError
    from pytest_hwopt.backends.modelpath import ModelPath, Unavailable, WrongOutputs

    device = state.device()
    fixture_backend = (request.getfixturevalue("hwopt_backend")
                       if "hwopt_backend" in request.node.fixturenames else None)
    path = ModelPath(state.backends, device, threads=state.settings.threads,
                     seed=state.settings.seed,
                     accuracy_override=lambda candidate: _tolerance(specs, device, candidate),
                     on_progress=_progress(request.config),
                     announce_all=request.config.option.verbose > 0,
                     fixture_backend=fixture_backend)

    def prepare(bench: Bench, module: Any, example_inputs: Any, *, precision: str,
                name: str | None, backend: str | None) -> str:
        try:
            return path.prepare(bench, module, example_inputs, precision=precision, name=name,
                                backend=backend)
        except Unavailable as exc:
            pytest.skip(str(exc))
        except (BackendError, WrongOutputs) as exc:
            pytest.fail(str(exc), pytrace=False)

    return prepare


def _tolerance(specs: list[Spec], device: Device, candidate: str) -> Tolerance | None:
    """The tolerance from the test's hwopt.accuracy marker for this candidate."""
    from pytest_hwopt.core.verdicts import tolerance_of

    for spec in specs:
        if spec.kind == "accuracy" and spec.of in (None, candidate):
            return tolerance_of(spec, device.budget_keys())
    return None


def _graph_capture(device: Device) -> Callable[[Callable[[], Any]], Callable[[], Any]] | None:
    """CUDA graph capture for ``measure(..., cuda_graph=True)``; None off a GPU."""
    if device.kind != "cuda":
        return None

    def capture(fn: Callable[[], Any]) -> Callable[[], Any]:
        from pytest_hwopt.hardware.cudagraph import capture as capture_graph

        return capture_graph(fn)

    return capture


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """A preparation's message in the terminal, stepping around the test's output capture
    as pytest's own ``-s`` does (the model path decides which messages to show)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(message: str) -> None:
        if reporter is None:
            return
        suspended = (capture.global_and_fixture_disabled() if capture is not None
                     else contextlib.nullcontext())
        with suspended:
            reporter.write(f" [hwopt: {message}]", flush=True)

    return show
