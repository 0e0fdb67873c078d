"""pytest glue: options, markers, fixtures and the hooks that measure after a test body.

Loading this module imports no ML framework; backends and torch load when a test
that needs them runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

from pytest_hwopt.core import settings as opts
from pytest_hwopt.markers import MARKERS

if TYPE_CHECKING:  # the rest loads when a test uses the plugin, not at pytest start-up
    from pytest_hwopt.core.bench import Bench
    from pytest_hwopt.hardware.devices import Device
    from pytest_hwopt.core.specs import Requirement, Spec

RECORD = "hwopt"  # key of the user property that carries a test's results
PERF_TEST = "hwopt_test"  # marks the reports of tests that use the plugin's markers or fixtures
HWOPT_FIXTURES = frozenset({"hwopt_bench", "hwopt_backend", "hwopt_device"})


class State:
    """What the plugin keeps for one pytest run (``config.stash[state_key]``)."""

    def __init__(self, config: pytest.Config, settings: opts.Settings) -> None:
        self.config = config
        self.settings = settings
        self.records: list[dict[str, Any]] = []
        self._device: Device | None = None
        self._backends: dict[str, Any] | None = None
        self._monitor: Any = None
        self.perf_tests: set[str] = set()  # node ids of tests that use the plugin
        self.skipped_perf_tests: set[str] = set()
        self.all_skipped_message = ""

    def device(self) -> Device:
        """The measured device, resolved once (``auto`` resolves on first use)."""
        if self._device is None:
            from pytest_hwopt.hardware import devices

            spec = _worker_device(self.settings.device, self.config)
            self._device = devices.resolve(spec)
        return self._device

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # runs in the controller for xdist workers' reports too, so results merge here
        for key, value in report.user_properties:
            if key == RECORD:
                self.records.append(value)
            elif key == PERF_TEST:
                self.perf_tests.add(report.nodeid)
                if report.skipped:
                    self.skipped_perf_tests.add(report.nodeid)

    def backends(self) -> dict[str, Any]:
        """name -> Backend from every ``pytest_hwopt_backends`` implementation."""
        if self._backends is None:
            from pytest_hwopt.backends import base

            self._backends = base.collect(self.config.hook.pytest_hwopt_backends(config=self.config))
        return self._backends

    def monitor(self) -> Any:
        """NVML telemetry for the device (inactive on a CPU or without NVML)."""
        if self._monitor is None:
            from pytest_hwopt.hardware.monitor import DeviceMonitor

            self._monitor = DeviceMonitor(self.device())
        return self._monitor

    def peaks(self) -> dict[str, Any]:
        """Copy bandwidth and GEMM TFLOP/s of the device, measured once per machine and cached."""
        device = self.device()
        if not device.peak:
            from pytest_hwopt.hardware.peaks import measure_peaks, published_peak

            cache = self.config.cache.mkdir("hwopt-peaks") if getattr(
                self.config, "cache", None) is not None else None
            device.peak = measure_peaks(device, cache_dir=cache)
            published = published_peak(device.name)
            if published:
                device.peak["published"] = published
        return device.peak

    @contextlib.contextmanager
    def measuring(self) -> Iterator[dict[str, Any]]:
        """Around a run: under pytest-xdist one worker at a time per device; NVML watching."""
        with contextlib.ExitStack() as stack:
            if "PYTEST_XDIST_WORKER" in os.environ:
                from pytest_hwopt.hardware.devlock import device_lock

                stack.enter_context(device_lock(self.device().torch_device))
            seen = stack.enter_context(self.monitor().window())
            yield seen


state_key = pytest.StashKey[State]()
specs_key = pytest.StashKey["list[Spec]"]()
bench_key = pytest.StashKey["Bench"]()
record_key = pytest.StashKey["dict[str, Any]"]()


def settings_of(config: pytest.Config) -> opts.Settings:
    """The parsed ``--hwopt-*`` settings of a session (for conftests that build backends)."""
    return config.stash[state_key].settings


def _worker_device(spec: str, config: pytest.Config) -> str:
    """With pytest-xdist and ``--hwopt-device=cuda``, worker N takes GPU N mod count."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if spec != "cuda" or not worker.startswith("gw"):
        return spec
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{int(worker[2:]) % count}" if count > 1 else spec


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_hwopt import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hwopt", "inference performance budgets (pytest-hwopt)")
    for opt in opts.OPTIONS:
        if opt.flag:
            group.addoption(opt.cli, action="store_true", default=None, dest=opt.name,
                            help=opt.help)
            parser.addini(opt.name, opt.help, type="bool", default=False)
        else:
            group.addoption(opt.cli, action="store", default=None, dest=opt.name,
                            metavar=opt.name.split("_", 1)[1].upper(), help=opt.help)
            parser.addini(opt.name, opt.help, default="")
    from pytest_hwopt._plugin import results as results_plugin

    results_plugin.add_options(parser, group)


def pytest_configure(config: pytest.Config) -> None:
    for text in MARKERS.values():
        config.addinivalue_line("markers", text)
    raw = {}
    for opt in opts.OPTIONS:
        value = config.getoption(opt.name)
        raw[opt.name] = value if value is not None else config.getini(opt.name)
    try:
        settings = opts.parse_settings(raw)
    except opts.OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.cache == "cold" and settings.device == "cpu":
        raise pytest.UsageError("--hwopt-cache=cold flushes a GPU's L2 between samples; it "
                                "needs --hwopt-device=cuda (or auto on a GPU machine)")
    if settings.json_path and os.path.isdir(settings.json_path):
        raise pytest.UsageError(f"--hwopt-json={settings.json_path}: is a directory; "
                                "give a file path such as results.json")
    state = State(config, settings)
    config.stash[state_key] = state
    config.pluginmanager.register(state, "hwopt-state")
    from pytest_hwopt._plugin import results as results_plugin  # baselines, budgets file, HTML and pytest-benchmark output

    config.pluginmanager.register(results_plugin.ResultsPlugin(config), "hwopt-results")
    if settings.device != "auto":
        from pytest_hwopt.hardware.devices import DeviceError

        try:
            state.device()
        except DeviceError as exc:
            raise pytest.UsageError(f"--hwopt-device={settings.device}: {exc}") from None
    if settings.backends:
        known = state.backends()
        unknown = [b for b in settings.backends if b not in known]
        if unknown:
            raise pytest.UsageError(
                f"--hwopt-backends: unknown backend(s) {', '.join(unknown)}; "
                f"known: {', '.join(known)}")


@pytest.hookimpl(trylast=True)
def pytest_hwopt_backends(config: pytest.Config) -> list[Any]:
    from pytest_hwopt.backends import builtin

    cache = config.cache.mkdir("hwopt") if getattr(config, "cache", None) is not None else None
    return builtin.all_backends(config.stash[state_key].settings, cache)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hwopt_backend" not in metafunc.fixturenames or _parametrized_by_test(metafunc):
        return
    state = metafunc.config.stash[state_key]
    names = list(state.settings.backends)
    if not names:
        backends = state.backends()
        candidates = [n for n in backends if n != "pytorch"]
        device = state.device()
        names = [n for n in candidates if backends[n].unavailable_reason(device) is None]
        # none available: keep them all, so each skips with its reason instead of vanishing
        names = names or candidates
    metafunc.parametrize("hwopt_backend", names, indirect=True, ids=names)


def _parametrized_by_test(metafunc: pytest.Metafunc) -> bool:
    """The test picks its backends itself: ``parametrize("hwopt_backend", [...], indirect=True)``."""
    for mark in metafunc.definition.iter_markers(name="parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "hwopt_backend" in names:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _uses_plugin(item, benchmark=True):
        return  # an ordinary test pays nothing
    from pytest_hwopt.markers import marker_arguments
    from pytest_hwopt.core.specs import BUDGET_KINDS, SpecError, parse_marker, parse_requires

    specs: list[Spec] = []
    try:
        for kind in BUDGET_KINDS:
            for mark in reversed(list(item.iter_markers(name=f"hwopt_{kind}"))):
                args, kwargs = marker_arguments(mark)
                specs.append(parse_marker(kind, args, kwargs))
        requirements = [parse_requires(*marker_arguments(m))
                        for m in item.iter_markers(name="hwopt_requires")]
    except SpecError as exc:
        pytest.fail(f"bad marker argument: {exc}", pytrace=False)
    item.config.hook.pytest_hwopt_budgets(item=item, specs=specs)
    item.stash[specs_key] = specs
    state = item.config.stash[state_key]
    for req in requirements:
        reason = _unmet(req, state)
        if reason:
            pytest.skip(reason)


def _unmet(req: Requirement, state: State) -> str | None:
    device = state.device()
    if req.devices:
        wanted = [d.lower() for d in req.devices]
        if device.kind not in wanted and device.torch_device not in wanted:
            return (f"hwopt: requires device {' or '.join(req.devices)}; measuring on "
                    f"{device.torch_device} ({device.name})")
    backends = state.backends()
    for name in req.backends:
        if name not in backends:
            return f"hwopt: requires backend {name!r}, which is not registered"
        reason = backends[name].unavailable_reason(device)
        if reason:
            return f"hwopt: backend {name} unavailable on {device.torch_device}: {reason}"
    return None


@pytest.fixture(scope="session")
def hwopt_device(pytestconfig: pytest.Config) -> Device:
    """The device tests measure on (``--hwopt-device``)."""
    return pytestconfig.stash[state_key].device()


@pytest.fixture
def hwopt_bench(request: pytest.FixtureRequest) -> Bench:
    """Register variants with ``measure(name, fn)``; they are measured after the test body."""
    from pytest_hwopt.core.bench import Bench
    from pytest_hwopt.core.verdicts import SAMPLED_KINDS, RoleError, evaluate_all, undecided
    from pytest_hwopt.hardware.devices import DeviceError
    from pytest_hwopt.core.engine import Engine, EngineConfig

    state = request.config.stash[state_key]
    settings = state.settings
    device = state.device()
    item = request.node
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
    engine = Engine(config, timer=timer, memory=device.memory())
    specs = item.stash.get(specs_key, [])
    bench: Bench

    def decided() -> Callable[[Any], bool] | None:
        # only sampled budgets decide when to stop: outputs are compared once, after the run
        # (mid-run, the after-timing outputs do not exist yet)
        sampled = [s for s in _all_specs(specs, bench) if s.kind in SAMPLED_KINDS]
        if not sampled:
            return None

        def clear(measurements: Any) -> bool:
            try:
                checks = evaluate_all(sampled, measurements, device.budget_keys(),
                                      settings.confidence, bench.tolerances,
                                      sorted(bench.references))
            except RoleError:
                return True  # reported after the run
            return not undecided(checks)

        return clear

    fixture_backend = (request.getfixturevalue("hwopt_backend")
                       if "hwopt_backend" in item.fixturenames else None)

    def prepare_model(bench: Bench, module: Any, example_inputs: Any, *, precision: str,
                      name: str | None, backend: str | None) -> str:
        from pytest_hwopt.backends import modelpath
        from pytest_hwopt.backends.base import BackendError

        chosen = backend or fixture_backend
        if chosen is None:
            raise ValueError("hwopt_bench.model(): pass backend=<name> or request the "
                             "hwopt_backend fixture")
        backends = state.backends()
        if chosen not in backends:
            raise ValueError(f"hwopt_bench.model(): unknown backend {chosen!r}; known: "
                             f"{', '.join(backends)}")
        reason = backends[chosen].unavailable_reason(device)
        if reason:
            pytest.skip(f"hwopt: backend {chosen} unavailable on {device.torch_device}: "
                        f"{reason}")
        candidate = name or modelpath.variant_name(chosen, precision)
        try:
            return modelpath.register(bench, backends, chosen, module, example_inputs, device,
                                      precision, name, settings.threads,
                                      _accuracy_override(specs, device, candidate),
                                      settings.seed,
                                      _progress(request.config, backends[chosen].slow_to_prepare))
        except (BackendError, modelpath.WrongOutputs) as exc:
            pytest.fail(str(exc), pytrace=False)
        except modelpath.Unsupported as exc:
            pytest.skip(f"hwopt: {exc}")

    bench = Bench(engine, decided, state.measuring, prepare_model,
                  after_run=lambda b: _annotate(state, b), capture=_graph_capture(device))
    item.stash[bench_key] = bench
    return bench


@pytest.fixture
def hwopt_backend(request: pytest.FixtureRequest) -> str:
    """The backend this test instance runs on; parametrized over ``--hwopt-backends``."""
    name: str = getattr(request, "param", "")
    state = request.config.stash[state_key]
    backends = state.backends()
    if name not in backends:
        raise ValueError(f"hwopt_backend: unknown backend {name!r}; known: {', '.join(backends)}")
    backend = backends[name]
    reason = backend.unavailable_reason(state.device())
    if reason:
        pytest.skip(f"hwopt: backend {name} unavailable on {state.device().torch_device}: "
                    f"{reason}")
    return name


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    result = yield
    if specs_key not in pyfuncitem.stash and bench_key not in pyfuncitem.stash:
        return result  # not a performance test
    from pytest_hwopt.core.verdicts import RoleError, evaluate_all, reported_speedups
    specs = pyfuncitem.stash.get(specs_key, [])
    bench = pyfuncitem.stash.get(bench_key, None)
    state = pyfuncitem.config.stash[state_key]
    if bench is not None and bench.variants:
        measurements = bench.run()
        record: dict[str, Any] = _run_record(bench)
        references, tolerances = sorted(bench.references), bench.tolerances
        specs = _all_specs(specs, bench)
    else:
        measurements = _from_pytest_benchmark(pyfuncitem) if specs else {}
        if not measurements:
            if specs:
                kinds = ", ".join(sorted({f"hwopt.{s.kind}" for s in specs}))
                pytest.fail(f"test has budget markers ({kinds}) but measured nothing: request "
                            "the hwopt_bench fixture and register variants with "
                            "hwopt_bench.measure()", pytrace=False)
            return result
        record, references, tolerances = {"source": "pytest-benchmark"}, [], {}
    settings = state.settings
    device = state.device()
    try:
        checks = evaluate_all(specs, measurements, device.budget_keys(), settings.confidence,
                              tolerances, references)
    except RoleError as exc:
        pytest.fail(f"hwopt: {exc}", pytrace=False)
    checks += reported_speedups(measurements, references, checks, settings.confidence)
    pyfuncitem.config.hook.pytest_hwopt_checks(item=pyfuncitem, checks=checks,
                                               measurements=dict(measurements))
    pyfuncitem.stash[record_key] = {
        "test": pyfuncitem.nodeid, "device": device.torch_device, **record,
        "results": [m.to_dict() for m in measurements.values()],
        "checks": [c.to_dict() for c in checks]}
    # wrong outputs first: they explain why a speedup did not count
    failed = sorted((c for c in checks if not c.passed), key=lambda c: c.kind != "accuracy")
    if failed and not settings.report_only:
        pytest.fail("\n".join(c.message for c in failed), pytrace=False)
    return result


def _graph_capture(device: Device) -> Callable[[Callable[[], Any]], Callable[[], Any]] | None:
    """CUDA graph capture for ``measure(..., cuda_graph=True)``; None off a GPU."""
    if device.kind != "cuda":
        return None

    def capture(fn: Callable[[], Any]) -> Callable[[], Any]:
        from pytest_hwopt.hardware.cudagraph import capture as capture_graph

        return capture_graph(fn)

    return capture


def _from_pytest_benchmark(item: pytest.Function) -> dict[str, Any]:
    """Budgets on a test that used pytest-benchmark's ``benchmark`` fixture: its timings."""
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if fixture is None:
        return {}
    from pytest_hwopt.results.benchmark_format import measurements_from_benchmark

    return measurements_from_benchmark(fixture)


def _run_record(bench: Bench) -> dict[str, Any]:
    """How the interleaved run went: rounds, why it stopped, contention, telemetry, notes."""
    run = bench.result
    assert run is not None
    return {"rounds": run.rounds, "stopped": run.stopped, "elapsed_s": run.elapsed_s,
            "contention": run.contention.to_dict(), "telemetry": bench.telemetry,
            "notes": dict(bench.notes)}


def _annotate(state: State, bench: Bench) -> None:
    """Roofline figures for variants that declared their work; energy per call on NVIDIA GPUs."""
    from pytest_hwopt.hardware import monitor as monitoring

    assert bench.result is not None
    measurements = bench.result.measurements
    if any("bytes" in m.extra or "flops" in m.extra for m in measurements.values()):
        monitoring.annotate_roofline(measurements, state.peaks())
    monitor = state.monitor()
    if monitor.active:
        for name, m in measurements.items():
            m.extra["energy_mj_per_call"] = monitor.energy_per_call(bench.variants[name].fn)


def _all_specs(specs: list[Spec], bench: Bench) -> list[Spec]:
    """The test's budgets plus the gates preparation added, unless the test set its own."""
    own = {(s.kind, s.of) for s in specs}
    return specs + [s for s in bench.implicit_specs
                    if (s.kind, s.of) not in own and (s.kind, None) not in own]


def _accuracy_override(specs: list[Spec], device: Device, candidate: str
                       ) -> Any:
    """The tolerance from the test's hwopt.accuracy marker for this candidate (model path gate)."""
    from pytest_hwopt.core.verdicts import tolerance_of

    for spec in specs:
        if spec.kind == "accuracy" and spec.of in (None, candidate):
            return tolerance_of(spec, device.budget_keys())
    return None


def _progress(config: pytest.Config, slow: bool) -> Callable[[str], None]:
    """Preparations say so in the terminal: always when slow (a compile, an engine build, which
    can take minutes), with ``-v`` otherwise."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(message: str) -> None:
        if reporter is None or not (slow or config.option.verbose > 0):
            return
        # the test's output is being captured: step around it, as pytest's own -s does
        suspended = (capture.global_and_fixture_disabled() if capture is not None
                     else contextlib.nullcontext())
        with suspended:
            reporter.write(f" [hwopt: {message}]", flush=True)

    return show


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call" and record_key in item.stash:
        report.user_properties.append((RECORD, item.stash[record_key]))
    if (report.when == "call" or report.skipped) and _uses_plugin(item):
        report.user_properties.append((PERF_TEST, True))
    return report


def _uses_plugin(item: pytest.Item, benchmark: bool = False) -> bool:
    """A performance test: it requests a hwopt fixture (or, with ``benchmark``, pytest-benchmark's,
    which a budgets file may give budgets to) or carries a hwopt marker."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if HWOPT_FIXTURES & fixtures or (benchmark and "benchmark" in fixtures):
        return True
    return any(m.name.startswith("hwopt_") for m in item.iter_markers())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(state_key, None)
    if state is not None and state.all_skipped_message:
        terminalreporter.write_sep("-", "hwopt: nothing measured", red=True)
        terminalreporter.write_line(state.all_skipped_message)
    if state is None or not state.records:
        return
    from pytest_hwopt.results import terminal as report

    tr = terminalreporter
    tr.write_sep("-", "hwopt summary")
    for line in report.table(report.summary_rows(state.records), report.SUMMARY_HEADER):
        tr.write_line(line)
    for line in report.note_lines(state.records):
        tr.write_line(line)
    counts: dict[str, int] = {}
    for rec in state.records:
        for check in rec["checks"]:
            counts[check["status"]] = counts.get(check["status"], 0) + 1
    device = state.records[0].get("device", "")
    totals = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no budgets"
    tr.write_line(f"hwopt: {len(state.records)} test(s) measured on {device}; checks: {totals}"
                  + ("; report only: budgets did not fail tests" if state.settings.report_only
                     else ""))
    if state.settings.json_path and not hasattr(config, "workerinput"):
        tr.write_line(f"hwopt: results written to {state.settings.json_path}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(state_key, None)
    if state is None or hasattr(config, "workerinput"):
        return
    if state.perf_tests and state.perf_tests == state.skipped_perf_tests:
        # every performance test skipped: the run must not look green
        state.all_skipped_message = (
            f"hwopt: all {len(state.perf_tests)} performance test(s) were skipped, so no "
            f"budget was checked (see the skip reasons, e.g. with -rs); failing the run")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not state.records and not state.settings.json_path:
        return  # nothing measured, nothing asked for
    from pytest_hwopt import __version__
    from pytest_hwopt.hardware import environment
    from pytest_hwopt.results import terminal as report

    env = environment.collect(state._device, state.settings.threads)
    env["settings"] = {k: v for k, v in vars(state.settings).items()}
    document = report.document(state.records, env, __version__)
    # hooks first: a baseline comparison adds to the document that --hwopt-json writes
    config.hook.pytest_hwopt_session_results(config=config, document=document)
    if state.settings.json_path:
        report.write_json_atomic(state.settings.json_path, document)
