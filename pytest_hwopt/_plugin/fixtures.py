"""The fixtures: ``hwopt_device``, ``hwopt_backend`` and ``hwopt_bench`` (thin: they assemble
objects that know nothing of pytest)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import pytest

from pytest_hwopt._plugin import verdict
from pytest_hwopt._plugin.collection import unavailable
from pytest_hwopt._plugin.state import State, bench_key, specs_key, state_of

if TYPE_CHECKING:
    from pytest_hwopt.backends.base import Backend
    from pytest_hwopt.core.bench import Bench
    from pytest_hwopt.core.engine import Engine
    from pytest_hwopt.core.specs import Spec, Tolerance
    from pytest_hwopt.hardware.devices import Device
    from pytest_hwopt.hardware.threads import IdleSampler, ThreadChoice

#: the session's thread-count sampler (``hardware.threads``), made at session start
threads_key: Final[pytest.StashKey[IdleSampler]] = pytest.StashKey()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Open the idle-core window: one read of ``/proc/stat``, so that the count chosen on
    first need costs no wait when collection took longer than the window."""
    _sampler(session.config).start()


@pytest.hookimpl(wrapper=True)
def pytest_hwopt_backends(config: pytest.Config
                          ) -> Generator[None, list[list[Backend]], list[list[Backend]]]:
    """Backends take the thread count when they are built (``settings_of(config).threads``
    in a conftest's, ``Settings.threads`` in the built-in ones): choose it first."""
    thread_choice(state_of(config))
    return (yield)


def thread_choice(state: State) -> ThreadChoice:
    """The session's thread count, chosen once on first need (``hardware.threads``):
    ``--hwopt-threads``, else the cores idle at start. ``state.settings.threads`` is set to
    it, so that everything that reads the settings later (backends, the environment in the
    results, worker processes) uses the same count."""
    choice = _sampler(state.config).choice()
    if state.settings.threads != choice.count:
        state.settings = dataclasses.replace(state.settings, threads=choice.count)
    return choice


def _sampler(config: pytest.Config) -> IdleSampler:
    from pytest_hwopt.hardware.threads import IdleSampler

    if threads_key not in config.stash:
        given = config.getoption("hwopt_threads") or config.getini("hwopt_threads")
        settings = state_of(config).settings
        # --hwopt-disable times nothing: the usable cores, without a window of idle cores
        config.stash[threads_key] = IdleSampler(
            settings.threads if given or settings.disable else None)
    return config.stash[threads_key]


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
def hwopt_bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    """Register variants with ``measure(name, fn)``; they are measured after the test body
    (with ``--hwopt-disable``, each called once). The engine's event loop, on which
    awaitable variants ran, is closed at the end of the test."""
    from pytest_hwopt.core.bench import Bench

    state = state_of(request.config)
    choice = thread_choice(state)  # before the model path and the engine read it
    item = request.node
    specs: list[Spec] = item.stash.get(specs_key, [])
    model_path = _model_path(request, state, specs)
    engine = _engine(state)
    pools: dict[str, int] = {}

    def after_run(b: Bench) -> None:
        _record_threads(b, choice, pools)
        verdict.annotate(state, b)
        _goodput_objectives(specs, b)

    bench = Bench(engine, lambda b: verdict.stop_rule(specs, b, state),
                  lambda: _measuring(state, choice.count, pools), model_path,
                  after_run=after_run, capture=_graph_capture(state.device()),
                  timing=not state.settings.disable)
    bench.prepare_generation = _generation(state)
    bench.serve_runner = _serve_round
    bench.loadgen_runner = _loadgen_run(request)
    item.stash[bench_key] = bench
    yield bench
    bench.close()


def _serve_round(load: Any, index: int) -> Any:
    """One load run of a serve variant (:mod:`pytest_hwopt.backends.serving`; aiohttp is
    imported on the first run, not with the plugin)."""
    from pytest_hwopt.backends.serving import load_round

    return load_round(load, index)


def _loadgen_run(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    """One LoadGen test, its logs under the test's temporary folder."""
    def run(load: Any) -> Any:
        from pytest_hwopt.backends.serving import loadgen_measurement

        folder = request.getfixturevalue("tmp_path_factory").mktemp("loadgen")
        return loadgen_measurement(load, folder)

    return run


def _goodput_objectives(specs: list[Spec], bench: Bench) -> None:
    """Serve variants judged by a goodput budget carry its objectives, so that their
    results write ``goodput``."""
    from pytest_hwopt.core.served import ServeMeasurement, slo_of

    assert bench.result is not None
    serves = {n: m for n, m in bench.result.measurements.items()
              if isinstance(m, ServeMeasurement)}
    for spec in specs:
        if spec.kind != "goodput":
            continue
        names = [spec.of] if spec.of is not None else list(serves)
        for name in names:
            m = serves.get(name or "")
            if m is not None:
                m.slo = slo_of(spec.options)


def _generation(state: State) -> Callable[..., Any]:
    """``hwopt_bench.generate()`` on the session's device
    (:mod:`pytest_hwopt.backends.generation`)."""
    from pytest_hwopt.backends.generation import prepare

    return prepare(state.device())


def _engine(state: State) -> Engine:
    """An engine on the session's device with the session's sampling settings (the
    thread count is applied around each run: :func:`_measuring`)."""
    from pytest_hwopt.core.engine import Engine, EngineConfig
    from pytest_hwopt.hardware.devices import DeviceError

    settings, device = state.settings, state.device()
    config = EngineConfig(warmup_ms=settings.warmup_ms, block_ms=settings.block_ms,
                          min_rounds=settings.min_rounds, max_time_s=settings.max_time_s,
                          seed=settings.seed)
    try:
        timer = device.timer(cold_cache=settings.cache == "cold")
    except DeviceError as exc:
        raise pytest.UsageError(f"--hwopt-cache=cold: {exc}") from None
    return Engine(config, timer=timer, memory=device.memory())


@contextlib.contextmanager
def _measuring(state: State, threads: int, pools: dict[str, int]
               ) -> Iterator[Mapping[str, object]]:
    """Around a measured run: the session's hold on the device and its telemetry
    (``State.measuring``), then every thread pool at ``threads``; ``pools`` receives the
    threads in force per pool during the run."""
    from pytest_hwopt.hardware.threads import limited

    torch = sys.modules.get("torch")
    if torch is not None:  # stays set after the run, as the model path leaves it, so that
        torch.set_num_threads(threads)  # the device's peaks are measured at the same count
    with state.measuring() as seen, limited(threads) as in_force:
        pools.clear()
        pools.update(in_force)
        yield seen


def _record_threads(bench: Bench, choice: ThreadChoice, pools: Mapping[str, int]) -> None:
    """Each result's ``threads``, ``threads_source`` and ``thread_pools`` (JSON)."""
    from pytest_hwopt.core.measurement import MeasurementExtra

    if bench.result is None:
        return
    for m in bench.result.measurements.values():
        # keys MeasurementExtra does not list: the plugin's, like a backend's facts
        m.extra.update(cast(MeasurementExtra, {"threads": choice.count,
                                               "threads_source": choice.source,
                                               "thread_pools": dict(pools)}))


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
        skip_reason = failure = ""
        try:
            return path.prepare(bench, module, example_inputs, precision=precision, name=name,
                                backend=backend)
        except Unavailable as exc:
            skip_reason = str(exc)
        except (BackendError, WrongOutputs) as exc:
            failure = str(exc)
        # outside the handlers, so that a failure is printed once (not again "during
        # handling of the above exception")
        if skip_reason:
            pytest.skip(skip_reason)
        pytest.fail(failure, pytrace=False)

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

        return capture_graph(fn, device=device.index or 0)  # on the measured GPU

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
