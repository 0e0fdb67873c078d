"""After a test body: measure its variants, evaluate its budgets, fail it on a clear miss."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, cast

import pytest

from pytest_hwopt._plugin.state import State, bench_key, record_key, specs_key, state_of

if TYPE_CHECKING:
    from pytest_hwopt.core.bench import Bench
    from pytest_hwopt.core.checks import Check
    from pytest_hwopt.core.measurement import Measurement
    from pytest_hwopt.core.specs import Spec
    from pytest_hwopt.results.schema import Record


def all_specs(specs: list[Spec], bench: Bench) -> list[Spec]:
    """The test's budgets plus the gates preparation added, unless the test set its own."""
    own = {(s.kind, s.of) for s in specs}
    return specs + [s for s in bench.implicit_specs
                    if (s.kind, s.of) not in own and (s.kind, None) not in own]


def stop_rule(specs: list[Spec], bench: Bench, state: State
              ) -> Callable[[Mapping[str, Measurement]], bool] | None:
    """When the engine may stop sampling: every sampled budget is clear of its interval.

    Only sampled budgets decide: outputs are compared once, after the run (mid-run, the
    after-timing outputs do not exist yet). None when the test has no sampled budget.
    """
    from pytest_hwopt.core.verdicts import SAMPLED_KINDS, RoleError, evaluate_all, undecided

    sampled = [s for s in all_specs(specs, bench) if s.kind in SAMPLED_KINDS]
    if not sampled:
        return None
    keys, confidence = state.device().budget_keys(), state.settings.confidence

    def clear(measurements: Mapping[str, Measurement]) -> bool:
        try:
            checks = evaluate_all(sampled, measurements, keys, confidence, bench.tolerances,
                                  sorted(bench.references))
        except RoleError:
            return True  # reported after the run
        return not undecided(checks)

    return clear


def annotate(state: State, bench: Bench) -> None:
    """Roofline figures for variants that declared their work; energy per call on NVIDIA GPUs."""
    from pytest_hwopt.hardware.roofline import annotate_roofline

    assert bench.result is not None
    if not bench.timing:
        return  # --hwopt-disable: figures of speed are not measured
    measurements = bench.result.measurements
    if any("bytes" in m.extra or "flops" in m.extra for m in measurements.values()):
        annotate_roofline(measurements, state.peaks())
    device_monitor = state.monitor()
    if device_monitor.active:
        for name, m in measurements.items():
            reading = device_monitor.energy(bench.call_of(name))
            m.extra["energy_mj_per_call"] = reading["mj_per_call"] if reading else None
            if reading is not None:  # the idle draw apart, and what the figure is made of
                m.extra["idle_power_w"] = reading["idle_power_w"]
                m.extra["energy_above_idle_mj_per_call"] = reading["above_idle_mj_per_call"]


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    result = yield
    if specs_key not in pyfuncitem.stash and bench_key not in pyfuncitem.stash:
        return result  # not a performance test
    from pytest_hwopt.core.verdicts import RoleError, evaluate_all, reported_speedups

    specs = pyfuncitem.stash.get(specs_key, [])
    bench = pyfuncitem.stash.get(bench_key, None)
    state = state_of(pyfuncitem.config)
    record: dict[str, Any]
    if bench is not None and (bench.variants or bench.serves or bench.loadgens):
        from pytest_hwopt.core.calls import DeferredOutput

        try:
            measurements = bench.run()
        except DeferredOutput as exc:  # a generator returned: the message names the fix
            pytest.fail(str(exc), pytrace=False)
        record = _run_record(bench)
        references, tolerances = sorted(bench.references), bench.tolerances
        specs = all_specs(specs, bench)
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
    settings, device = state.settings, state.device()
    try:
        checks = evaluate_all(specs, measurements, device.budget_keys(), settings.confidence,
                              tolerances, references)
    except RoleError as exc:
        role_error = str(exc)
    else:
        role_error = ""
    if role_error:  # failed outside the handler, so the message is printed once
        pytest.fail(f"hwopt: {role_error}", pytrace=False)
    if settings.disable:  # each variant was called once: outputs only
        from pytest_hwopt.core.kinds import without_timing
        from pytest_hwopt.core.settings import DISABLED_REASON

        checks = without_timing(checks, DISABLED_REASON)
    else:
        checks += reported_speedups(measurements, references, checks, settings.confidence)
        if bench is not None:
            checks = _busy_pools(bench, checks)
        from pytest_hwopt._plugin.processes import repeat_in_processes

        checks = repeat_in_processes(pyfuncitem, state, checks)  # a bias lasting a process
    pyfuncitem.config.hook.pytest_hwopt_checks(item=pyfuncitem, checks=checks,
                                               measurements=dict(measurements))
    from pytest_hwopt._plugin.collection import identity

    pyfuncitem.stash[record_key] = cast("Record", {
        "test": pyfuncitem.nodeid, **identity(pyfuncitem), "device": device.torch_device,
        **record,
        "results": [m.to_dict() for m in measurements.values()],
        "checks": [c.to_dict() for c in checks]})
    # a clear miss fails the test (wrong outputs first: they explain why a speedup did not
    # count); an inconclusive check warns, attributed to the test, unless --hwopt-strict
    from pytest_hwopt.core import outcomes

    decided = outcomes.outcome(checks, strict=settings.strict,
                               report_only=settings.report_only)
    failures = [c.message for c in decided.failing]
    if decided.warned:
        path, line, _ = pyfuncitem.reportinfo()
        escalated = outcomes.warn_inconclusive(decided.warned, str(path), (line or 0) + 1)
        if escalated:  # a warnings filter (-W error::...) made them errors
            failures += escalated + ["(InconclusiveWarning turned into an error by a "
                                     "warnings filter)"]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    return result


def _busy_pools(bench: Bench, checks: list[Check]) -> list[Check]:
    """Sampled checks of a run whose thread pools had fewer free cores than threads are
    inconclusive (``core.contention.oversubscribed``)."""
    import os

    from pytest_hwopt.core.contention import oversubscribed
    from pytest_hwopt.core.outcomes import undecided_because
    from pytest_hwopt.core.verdicts import SAMPLED_KINDS

    run = bench.result
    if run is None:
        return checks
    counts = [m.extra.get("threads") for m in run.measurements.values()]
    threads = max((c for c in counts if isinstance(c, int)), default=1)
    why = oversubscribed(run.contention, threads, os.cpu_count() or 1)
    return undecided_because(checks, why, SAMPLED_KINDS) if why else checks


def _from_pytest_benchmark(item: pytest.Function) -> dict[str, Measurement]:
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
